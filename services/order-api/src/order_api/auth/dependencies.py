"""Annotated dependencies for routes that serve customers (``Annotated`` aliases).

- ``CurrentCustomer``: the customer of a valid ``Authorization: Bearer cs_…`` session, else ``401``;
- ``OptionalCustomer``: ``None`` when no ``Authorization`` header is sent, ``401`` for a bad one;
- ``Protection``, ``RateLimits``, ``AppSettings``: what the app holds, for service calls;
- ``ClientIp``: the client's network as per-client limits count it (an IPv4 address, an IPv6 /64:
  ``servicekit.ratelimit.client_key``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from order_api.auth.errors import SessionInvalidError, SessionMissingError
from order_api.auth.service import CustomerPrincipal, authenticate_customer
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.app import DbSession
from servicekit.ratelimit import Network, RateLimiter, client_key, parse_networks

_session_token = HTTPBearer(
    auto_error=False,
    scheme_name="CustomerSession",
    description="A customer session token (`cs_…`) from order creation or `POST /v1/auth/verify`.",
)


async def _optional_customer(
    request: Request,
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_session_token)],
) -> CustomerPrincipal | None:
    if credentials is None or not credentials.credentials:
        if request.headers.get("authorization"):
            raise SessionInvalidError("Send the session token as 'Authorization: Bearer cs_…'.")
        return None
    principal = await authenticate_customer(session=session, token=credentials.credentials)
    request.state.customer = principal
    return principal


async def _current_customer(
    principal: Annotated[CustomerPrincipal | None, Depends(_optional_customer)],
) -> CustomerPrincipal:
    if principal is None:
        raise SessionMissingError("Send a customer session token as 'Authorization: Bearer cs_…'.")
    return principal


async def _protection(request: Request) -> DataProtection:
    protection: DataProtection = request.app.state.protection
    return protection


async def _rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _client_ip(request: Request) -> str:
    settings: Settings = request.app.state.settings
    networks: list[Network] | None = getattr(request.app.state, "trusted_proxies", None)
    if networks is None:
        networks = request.app.state.trusted_proxies = parse_networks(settings.trusted_proxies)
    return client_key(request, trusted_proxies=networks, settings=settings)


CurrentCustomer = Annotated[CustomerPrincipal, Depends(_current_customer)]
OptionalCustomer = Annotated[CustomerPrincipal | None, Depends(_optional_customer)]
Protection = Annotated[DataProtection, Depends(_protection)]
RateLimits = Annotated[RateLimiter, Depends(_rate_limiter)]
ClientIp = Annotated[str, Depends(_client_ip)]
AppSettings = Annotated[Settings, Depends(_settings)]
