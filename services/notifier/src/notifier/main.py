"""The notifier app: ``uvicorn notifier.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from notifier.db import SCHEMA, inbox
from notifier.settings import Settings
from servicekit.app import Runtime, create_service_app
from servicekit.events import events_router

DESCRIPTION = """
Turns the desk's domain events into messages: email to customers and admins, Telegram to operators.

Every call needs an API key (`Authorization: Bearer <key>`) with the scope named on the route.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    runtime = Runtime(settings, schema=SCHEMA)
    runtime.add_peer("telegram-gateway", settings.telegram_gateway)
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        title="Exchange Desk — notifier",
        description=DESCRIPTION,
        openapi_tags=[{"name": "events", "description": "Events from order-api and wallet-pool."}],
    )
    app.include_router(events_router(inbox=inbox, handlers={}))
    return app
