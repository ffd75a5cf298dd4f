"""The telegram-gateway app: ``uvicorn telegram_gateway.main:create_app --factory``."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from servicekit.app import Runtime, create_service_app
from servicekit.client import ServiceClient
from servicekit.errors import problem_response
from servicekit.health import ReadinessCheck
from servicekit.settings import load_settings
from telegram_gateway.bot.errors import TelegramUnavailableError
from telegram_gateway.bot.webhook import router as webhook_router
from telegram_gateway.clients.order_api import OrderApiClient
from telegram_gateway.clients.wallet_pool import WalletPoolClient
from telegram_gateway.context import GatewayContext
from telegram_gateway.db import SCHEMA
from telegram_gateway.messages.router import router as messages_router
from telegram_gateway.settings import Settings
from telegram_gateway.workers.retention import message_retention

DESCRIPTION = """
The operators' Telegram bot: order cards with inline buttons, and the callbacks that act on order-api
on the operator's behalf.

- **Messages** (`POST /v1/messages`, API key with scope `messages:send`, from the notifier): order cards
  (posted, then edited as the order moves) and alerts.
- **Telegram** (`POST /telegram/webhook`): updates from Telegram, authenticated by the webhook's secret token.

Errors are `application/problem+json` with a stable `code`.
"""


async def _probe_wallet_pool(client: ServiceClient) -> str | None:
    stats = await WalletPoolClient(client).pool_stats()
    return f"{len(stats.currencies)} currencies"


async def _telegram_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """``503`` with ``Retry-After`` when Telegram said how long to wait (flood control)."""
    if not isinstance(exc, TelegramUnavailableError):  # pragma: no cover - registered for that class only
        raise exc
    headers = None if exc.retry_after_seconds is None else {"Retry-After": str(exc.retry_after_seconds)}
    return problem_response(exc.to_problem(request.url.path), headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    runtime = Runtime(settings, schema=SCHEMA, package="telegram_gateway")
    order_api = OrderApiClient(
        runtime.add_peer("order-api", settings.order_api), budget_seconds=settings.order_api_budget_seconds
    )
    wallet_pool = WalletPoolClient(
        runtime.add_peer("wallet-pool", settings.wallet_pool, probe=_probe_wallet_pool)
    )
    context = GatewayContext.build(
        settings=settings, runtime=runtime, order_api=order_api, wallet_pool=wallet_pool
    )
    telegram = context.telegram
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        context=context,
        title="Exchange Desk — telegram-gateway",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "messages", "description": "Order cards and alerts from the notifier."},
            {"name": "telegram", "description": "Updates from Telegram (webhook mode)."},
        ],
    )
    runtime.on_start.append(telegram.announce)
    runtime.add_worker(telegram)
    runtime.readiness_checks.append(ReadinessCheck("telegram", telegram.readiness, critical=False))

    runtime.add_retention(*message_retention(timedelta(days=settings.retention_days)))
    app.add_exception_handler(TelegramUnavailableError, _telegram_unavailable)
    app.include_router(messages_router)
    app.include_router(webhook_router)
    return app
