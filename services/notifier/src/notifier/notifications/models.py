"""``notification`` (one message to one recipient: an email, a Telegram message, a webhook delivery) and ``delivery_attempt`` (every try to send it)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from notifier.db import Base
from servicekit.db import UtcDateTime


class Channel(enum.StrEnum):
    email = "email"
    telegram = "telegram"
    webhook = "webhook"


TELEGRAM_KINDS = ("order_card", "alert")
"""The ``template`` of a Telegram notification: the ``kind`` of telegram-gateway's ``POST /v1/messages``."""

TELEGRAM_NO_LOCALE = ""
"""The ``locale`` of a Telegram notification: telegram-gateway renders it in the operators' language (and of a
webhook delivery, which has none)."""


class NotificationStatus(enum.StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"
    dead = "dead"


class AttemptOutcome(enum.StrEnum):
    sent = "sent"
    transient = "transient"
    permanent = "permanent"


class Notification(Base):
    __tablename__ = "notification"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    template: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(8))
    recipient_sealed: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="Personal data, sealed (servicekit.sealing, context notification.recipient); null once erased.",
    )
    recipient_index: Mapped[str | None] = mapped_column(
        String(64),
        nullable=True,
        comment="Blind index of the recipient (one message per event and recipient).",
    )
    subject: Mapped[str | None] = mapped_column(
        String(300), nullable=True, comment="Set when rendered (templates put no personal data in subjects)."
    )
    variables_sealed: Mapped[str | None] = mapped_column(
        Text,
        nullable=True,
        comment="Template variables, sealed (context notification.variables); one-time secrets removed once "
        "sent; null once erased.",
    )
    customer_id: Mapped[str | None] = mapped_column(
        String(64), nullable=True, comment="The customer it is about (erasure); null for staff messages."
    )
    order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(
        UtcDateTime, comment="Not claimed before this time (also the claim's lease)."
    )
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("event_id", "template", "recipient_index"),
        Index("ix_notification_due", "status", "next_attempt_at"),
        Index("ix_notification_order_id", "order_id"),
        Index("ix_notification_customer_id", "customer_id"),
        Index("ix_notification_created_at", "created_at", "id"),
        # a webhook endpoint's delivery log (its id is the recipient)
        Index(
            "ix_notification_webhook_log",
            "recipient_index",
            "created_at",
            "id",
            postgresql_where=text("channel = 'webhook'"),
            sqlite_where=text("channel = 'webhook'"),
        ),
    )


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notification.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    provider: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    response_status: Mapped[int | None] = mapped_column(
        Integer, nullable=True, comment="The HTTP status a webhook endpoint answered."
    )
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_delivery_attempt_started_at", "started_at"),)
