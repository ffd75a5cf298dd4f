"""``webhook_endpoint``: where the website receives the desk's order events, and the secrets it checks them with.

Deliveries are notifications of the ``webhook`` channel (``notifier.notifications.models``): one per event and
endpoint, the endpoint's id as their (sealed) recipient.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from notifier.db import Base
from servicekit.db import UtcDateTime


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoint"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON, comment="The event types it receives.")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret_sealed: Mapped[str] = mapped_column(
        Text, comment="The signing secret, sealed (servicekit.sealing, context webhook.secret)."
    )
    previous_secret_sealed: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="The secret before the last rotation, sealed; it signs too until it expires.",
    )
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
