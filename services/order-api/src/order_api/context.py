"""What order-api's routes and workers work with, built once by ``create_app``.

Routes get it through one dependency (``Ctx``); workers get the parts they need when they are built. A
collaborator that cannot be built (keys that do not open, no event keys to seal the customer's address with)
stops the service at start-up with one line, never at the first request that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from order_api.clients.wallet_pool import WalletPoolClient
from order_api.currencies.service import PublishedCatalogue, currency_catalogue, published_catalogue
from order_api.orders.metrics import OrderMetrics
from order_api.orders.stream import OrderStreams
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.app import Runtime, refusing_start
from servicekit.ratelimit import Network, RateLimiter, parse_trusted_proxies
from servicekit.state import RuntimeContext, service_context


@dataclass(frozen=True, slots=True)
class OrderApiContext(RuntimeContext):
    settings: Settings
    runtime: Runtime
    protection: DataProtection
    """Customer data at rest, and the customer's address sealed into events to the notifier."""
    wallet_pool: WalletPoolClient
    rate_limiter: RateLimiter
    trusted_proxies: list[Network]
    """Proxies whose ``X-Forwarded-For`` names the client (``ORDER_API_TRUSTED_PROXIES``)."""
    currency_catalogue: PublishedCatalogue
    """``GET /v1/currencies``: made from the settings once, answered as it is."""
    order_streams: OrderStreams
    """This replica's open order streams (``GET /v1/orders/{id}/events``)."""
    metrics: OrderMetrics
    """Orders created and closed, take and handling times, on ``/metrics``."""

    @classmethod
    def build(cls, *, settings: Settings, runtime: Runtime, wallet_pool: WalletPoolClient) -> OrderApiContext:
        with refusing_start(settings.service_name):
            protection = DataProtection.from_settings(settings)
            protection.event_keyring()  # events to the notifier carry the customer's address sealed with it
            proxies = parse_trusted_proxies(
                settings.trusted_proxies, variable=settings.variable("trusted_proxies")
            )
        return cls(
            settings=settings,
            runtime=runtime,
            protection=protection,
            wallet_pool=wallet_pool,
            rate_limiter=runtime.rate_limiter(),
            trusted_proxies=proxies,
            currency_catalogue=published_catalogue(
                catalogue=currency_catalogue(currencies=settings.currencies),
                max_age_seconds=settings.currencies_cache_seconds,
            ),
            order_streams=OrderStreams(settings=settings),
            metrics=OrderMetrics(runtime.metrics_registry),
        )


def context_of(app: Starlette) -> OrderApiContext:
    """The context of an order-api app (tests, and the one hot route that skips the dependency)."""
    return service_context(app, OrderApiContext)


async def order_api_context(request: Request) -> OrderApiContext:
    return service_context(request.app, OrderApiContext)


Ctx = Annotated[OrderApiContext, Depends(order_api_context)]
