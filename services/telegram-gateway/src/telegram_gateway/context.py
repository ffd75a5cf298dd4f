"""What telegram-gateway's routes and workers work with, built once by ``create_app``.

Routes get it through one dependency (``Ctx``); the bot (the gateway's worker) gets its parts when it is built.
A collaborator configured wrongly (a trusted proxy that is not a network) stops the service at start-up with
one line, never at the first request that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from servicekit.app import Runtime, refusing_start
from servicekit.cache import ExpiringCache
from servicekit.db import Database
from servicekit.ratelimit import Network, RateLimiter, parse_trusted_proxies
from servicekit.state import service_context
from telegram_gateway.bot.runtime import TelegramBot
from telegram_gateway.clients.order_api import OrderApiClient
from telegram_gateway.clients.wallet_pool import WalletPoolClient
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.operators.service import OperatorLinks
from telegram_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class GatewayContext:
    settings: Settings
    runtime: Runtime
    order_api: OrderApiClient
    wallet_pool: WalletPoolClient
    metrics: GatewayMetrics
    telegram: TelegramBot
    """The bot: registers with Telegram, receives updates, posts and edits cards."""
    rate_limiter: RateLimiter
    trusted_proxies: list[Network]
    """Proxies whose ``X-Forwarded-For`` names the client (``TELEGRAM_GATEWAY_TRUSTED_PROXIES``)."""

    @property
    def database(self) -> Database:
        return self.runtime.database

    @classmethod
    def build(
        cls, *, settings: Settings, runtime: Runtime, order_api: OrderApiClient, wallet_pool: WalletPoolClient
    ) -> GatewayContext:
        with refusing_start(settings.service_name):
            proxies = parse_trusted_proxies(
                settings.trusted_proxies, variable=settings.variable("trusted_proxies")
            )
        metrics = GatewayMetrics(runtime.metrics_registry)
        operator_links = OperatorLinks(
            order_api=order_api,
            cache=ExpiringCache(
                redis=runtime.redis,
                namespace=f"{settings.service_name}:operator-link",
                ttl_seconds=settings.operator_cache_seconds,
            ),
        )
        telegram = TelegramBot(
            settings=settings,
            database=runtime.database,
            order_api=order_api,
            operator_links=operator_links,
            wallet_pool=wallet_pool,
            metrics=metrics,
        )
        return cls(
            settings=settings,
            runtime=runtime,
            order_api=order_api,
            wallet_pool=wallet_pool,
            metrics=metrics,
            telegram=telegram,
            rate_limiter=runtime.rate_limiter(),
            trusted_proxies=proxies,
        )


def context_of(app: Starlette) -> GatewayContext:
    """The context of a telegram-gateway app (tests)."""
    return service_context(app, GatewayContext)


async def gateway_context(request: Request) -> GatewayContext:
    return service_context(request.app, GatewayContext)


Ctx = Annotated[GatewayContext, Depends(gateway_context)]
