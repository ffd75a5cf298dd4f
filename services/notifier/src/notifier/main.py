"""The notifier app: ``uvicorn notifier.main:create_app --factory``."""

from __future__ import annotations

from fastapi import FastAPI

from notifier.alerts.router import router as alerts_router
from notifier.context import NotifierContext
from notifier.db import SCHEMA, inbox
from notifier.events import event_handlers
from notifier.notifications.router import router as notifications_router
from notifier.settings import Settings
from notifier.stats.router import router as stats_router
from notifier.webhooks.router import router as webhooks_router
from notifier.workers.alerts import AlertWorker
from notifier.workers.delivery import DeliveryWorker, delivery_queue_gauges
from notifier.workers.retention import notification_retention
from servicekit.app import Runtime, create_service_app
from servicekit.events import events_router
from servicekit.settings import load_settings

DESCRIPTION = """
Turns the desk's domain events into messages: email to customers and admins, Telegram to operators (through
telegram-gateway), signed webhooks to the website; tracks every delivery, and raises, escalates and resolves alerts.

Every call needs an API key (`Authorization: Bearer <key>`) with the scope named on the route.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    runtime = Runtime(settings, schema=SCHEMA, package="notifier")
    gateway = runtime.add_peer("telegram-gateway", settings.telegram_gateway)
    runtime.add_busy_tables("notification")  # every delivery attempt rewrites its row
    runtime.add_inbox_retention(inbox)
    runtime.add_retention(*notification_retention(settings))
    context = NotifierContext.build(settings=settings, runtime=runtime, gateway=gateway)
    app = create_service_app(
        settings=settings,
        runtime=runtime,
        context=context,
        title="Exchange Desk — notifier",
        description=DESCRIPTION,
        openapi_tags=[
            {"name": "events", "description": "Events from order-api and wallet-pool."},
            {"name": "notifications", "description": "The delivery queue: every message and its attempts."},
            {"name": "alerts", "description": "Alerts for operators and admins: list, acknowledge."},
            {"name": "stats", "description": "Delivery figures per channel and template."},
            {
                "name": "webhooks",
                "description": "The website's signed webhooks: endpoints, delivery log, redelivery, tests.",
            },
        ],
    )
    queue_gauges = delivery_queue_gauges(
        database=runtime.database, channels=[s.channel for s in context.senders]
    )
    runtime.add_scraped_gauges(queue_gauges)
    for sender in context.senders:
        runtime.add_worker(
            DeliveryWorker(
                database=runtime.database,
                protection=context.protection,
                sender=sender,
                max_attempts=settings.delivery_max_attempts,
                backoff_base_seconds=settings.delivery_backoff_base_seconds,
                backoff_max_seconds=settings.delivery_backoff_max_seconds,
                poll_seconds=settings.delivery_poll_seconds,
                batch_size=settings.delivery_batch_size,
                lease_seconds=settings.delivery_lease_seconds,
                metrics=context.delivery_metrics,
                gauges=queue_gauges,
            )
        )
    alert_worker = AlertWorker(database=runtime.database, alerting=context.alerting)
    runtime.add_worker(alert_worker.periodic(interval_seconds=settings.alert_check_seconds))
    app.include_router(
        events_router(inbox=inbox, handlers=event_handlers(context.alerting), scope="events:publish")
    )
    app.include_router(notifications_router)
    app.include_router(alerts_router)
    app.include_router(stats_router)
    app.include_router(webhooks_router)
    return app
