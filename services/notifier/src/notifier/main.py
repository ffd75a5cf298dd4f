"""The notifier app: ``uvicorn notifier.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from notifier.db import SCHEMA, inbox
from notifier.email import build_chain
from notifier.metrics import DeliveryMetrics
from notifier.notifications.router import router as notifications_router
from notifier.notifications.worker import DeliveryWorker
from notifier.rules import event_handlers
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
        openapi_tags=[
            {"name": "events", "description": "Events from order-api and wallet-pool."},
            {"name": "notifications", "description": "The delivery queue: every message and its attempts."},
        ],
    )
    runtime.add_worker(
        DeliveryWorker(
            database=runtime.database,
            chain=build_chain(settings),
            sender=settings.email_from,
            max_attempts=settings.delivery_max_attempts,
            backoff_base_seconds=settings.delivery_backoff_base_seconds,
            backoff_max_seconds=settings.delivery_backoff_max_seconds,
            poll_seconds=settings.delivery_poll_seconds,
            batch_size=settings.delivery_batch_size,
            lease_seconds=settings.delivery_lease_seconds,
            metrics=DeliveryMetrics(app.state.metrics_registry),
        )
    )
    app.include_router(events_router(inbox=inbox, handlers=event_handlers(), scope="events:publish"))
    app.include_router(notifications_router)
    return app
