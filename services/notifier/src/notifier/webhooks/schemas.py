"""Request and response bodies of ``/v1/admin/webhook-endpoints``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from notifier.notifications.models import NotificationStatus
from notifier.webhooks.events import SUBSCRIBABLE, WebhookEventType
from servicekit.pagination import Page

_URL = Field(
    min_length=1,
    max_length=2048,
    description="Where deliveries are POSTed: https, on a public address (checked again at each delivery).",
    examples=["https://shop.example.com/hooks/desk"],
)
_EVENT_TYPES = Field(
    min_length=1,
    description=f"The event types it receives: {', '.join(SUBSCRIBABLE)}.",
    examples=[["order.created", "order.status_changed"]],
)


class WebhookEndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://shop.example.com/hooks/desk",
                    "event_types": ["order.created", "order.status_changed"],
                    "description": "The shop's order page",
                }
            ]
        },
    )

    url: str = _URL
    event_types: list[WebhookEventType] = _EVENT_TYPES
    enabled: bool = True
    description: str = Field(default="", max_length=500)


class WebhookEndpointUpdate(BaseModel):
    """What changes; what is left out stays."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"enabled": False}, {"event_types": ["order.expired"]}]},
    )

    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[WebhookEventType] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = Field(default=None, max_length=500)


class WebhookEndpointRead(BaseModel):
    id: str
    url: str
    event_types: list[WebhookEventType]
    enabled: bool
    description: str
    previous_secret_expires_at: datetime | None = Field(
        description="Until when the secret before the last rotation still signs deliveries (beside the new one)."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpointRead):
    secret: str = Field(
        description="The signing secret (`whsec_` + base64), shown only in this answer: store it now.",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )


class WebhookEndpointPage(Page[WebhookEndpointRead]):
    """Webhook endpoints, newest first."""


class WebhookDeliveryRead(BaseModel):
    id: str = Field(description="The `webhook-id` header: the same on every attempt and redelivery.")
    event_type: str = Field(examples=["order.status_changed"])
    event_id: str | None = Field(description="The desk event it was made from; null for a test event.")
    order_id: str | None
    status: NotificationStatus = Field(description="pending, sent, failed (refused target) or dead.")
    attempts: int = Field(description="Attempts since it was queued or last redelivered.")
    response_status: int | None = Field(description="What the endpoint answered on the last attempt.")
    latency_ms: int | None = Field(description="How long the last attempt took.")
    error: str | None = Field(description="Why the last attempt failed.")
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


class WebhookDeliveryPage(Page[WebhookDeliveryRead]):
    """An endpoint's deliveries, newest first."""
