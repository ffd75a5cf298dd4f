"""What the notifier's routes and workers work with, built once by ``create_app``.

Routes get it through one dependency (``Ctx``); the delivery and alert workers and the event handlers get the
parts they need when they are built. Keys that do not open (the data keys, or the event keys order-api seals
the customer's address with) stop the service at start-up with one line, never at the first event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.applications import Starlette

from notifier.alerts.conditions import AlertPolicy
from notifier.alerts.service import Alerting
from notifier.email import EmailSender, build_chain
from notifier.metrics import AlertMetrics, DeliveryMetrics
from notifier.notifications.outcomes import ChannelSender
from notifier.protection import DataProtection
from notifier.settings import Settings
from notifier.telegram.sender import TelegramSender
from notifier.webhooks.sender import WebhookSender
from servicekit.app import Runtime, refusing_start
from servicekit.client import ServiceClient
from servicekit.state import RuntimeContext, service_context


@dataclass(frozen=True, slots=True)
class NotifierContext(RuntimeContext):
    settings: Settings
    runtime: Runtime
    protection: DataProtection
    """Recipients and variables sealed at rest; personal data in events opened in memory."""
    alerting: Alerting
    delivery_metrics: DeliveryMetrics
    senders: tuple[ChannelSender, ...]
    """One per channel the notifier delivers on: email, webhooks, and Telegram when it is on."""

    @classmethod
    def build(cls, *, settings: Settings, runtime: Runtime, gateway: ServiceClient) -> NotifierContext:
        with refusing_start(settings.service_name):
            protection = DataProtection.from_settings(settings)
            protection.event_keyring()  # order-api's events carry the address to write to sealed with it
        senders: list[ChannelSender] = [EmailSender(chain=build_chain(settings), sender=settings.email_from)]
        if settings.telegram_enabled:
            senders.append(TelegramSender(gateway))
        senders.append(WebhookSender(database=runtime.database, protection=protection, settings=settings))
        return cls(
            settings=settings,
            runtime=runtime,
            protection=protection,
            alerting=Alerting(
                policy=AlertPolicy.from_settings(settings),
                protection=protection,
                metrics=AlertMetrics(runtime.metrics_registry),
            ),
            delivery_metrics=DeliveryMetrics(runtime.metrics_registry),
            senders=tuple(senders),
        )


def context_of(app: Starlette) -> NotifierContext:
    """The context of a notifier app (tests)."""
    return service_context(app, NotifierContext)


async def notifier_context(request: Request) -> NotifierContext:
    return service_context(request.app, NotifierContext)


Ctx = Annotated[NotifierContext, Depends(notifier_context)]
