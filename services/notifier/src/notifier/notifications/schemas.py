"""Request and response bodies of ``/v1/notifications``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from notifier.notifications.models import Channel, NotificationStatus
from servicekit.pagination import Page


class NotificationRead(BaseModel):
    id: str
    channel: Channel
    template: str = Field(examples=["order_created"])
    locale: str = Field(examples=["ru"])
    recipient: str = Field(
        description="Masked (`j***@example.com`): personal data, stored sealed; `erased` once the customer was erased."
    )
    subject: str | None = Field(description="Set once the message was rendered for sending.")
    order_id: str | None
    event_id: str | None
    status: NotificationStatus
    attempts: int = Field(description="Attempts since it was queued or last redelivered.")
    next_attempt_at: datetime | None = Field(description="When a pending notification is tried next.")
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


class NotificationPageRead(Page[NotificationRead]):
    """Notifications, newest first."""
