"""The telegram-gateway app: ``uvicorn telegram_gateway.main:create_app --factory``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from servicekit.app import Runtime, create_service_app
from telegram_gateway.db import SCHEMA
from telegram_gateway.settings import Settings

log = logging.getLogger("telegram_gateway")

DESCRIPTION = """
The operators' Telegram bot: order cards with inline buttons, and the callbacks that act on order-api
on the operator's behalf.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, schema=SCHEMA)
    runtime.add_peer("order-api", settings.order_api)

    async def announce_bot_state() -> None:
        if settings.bot_token is None:
            log.warning("Telegram is off: no TELEGRAM_GATEWAY_BOT_TOKEN configured; the HTTP API still runs")

    runtime.on_start.append(announce_bot_state)
    return create_service_app(
        settings=settings,
        runtime=runtime,
        title="Exchange Desk — telegram-gateway",
        description=DESCRIPTION,
    )
