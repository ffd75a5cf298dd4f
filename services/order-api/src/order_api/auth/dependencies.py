"""Annotated dependencies for routes that serve customers (``Annotated`` aliases).

- ``CurrentCustomer``: the customer of a valid ``Authorization: Bearer cs_…`` session, else ``401``;
- ``OptionalCustomer``: ``None`` when no ``Authorization`` header is sent, ``401`` for a bad one;
- ``ClientIp``: the client's network as per-client limits count it (an IPv4 address, an IPv6 /64:
  ``servicekit.ratelimit.client_key``);
- ``MailboxCheck``: what asking for or guessing an emailed code works with, for this client.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from order_api.auth.errors import SessionInvalidError, SessionMissingError
from order_api.auth.service import CustomerPrincipal, MailboxProof, authenticate_customer
from order_api.context import Ctx
from servicekit.app import DbSession
from servicekit.ratelimit import client_key

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


async def _client_ip(request: Request, ctx: Ctx) -> str:
    return client_key(request, trusted_proxies=ctx.trusted_proxies, settings=ctx.settings)


async def _mailbox_check(session: DbSession, ctx: Ctx, ip: ClientIp) -> MailboxProof:
    return MailboxProof(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        rate_limiter=ctx.rate_limiter,
        client_ip=ip,
    )


CurrentCustomer = Annotated[CustomerPrincipal, Depends(_current_customer)]
OptionalCustomer = Annotated[CustomerPrincipal | None, Depends(_optional_customer)]
ClientIp = Annotated[str, Depends(_client_ip)]
MailboxCheck = Annotated[MailboxProof, Depends(_mailbox_check)]
