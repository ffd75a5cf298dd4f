"""``message_delivery``: every ``POST /v1/messages`` handled, by the notifier's message id, so a repeat posts
nothing."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from telegram_gateway.db import Base


class MessageDelivery(Base):
    __tablename__ = "message_delivery"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True, comment="The notifier's id.")
    kind: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(40))
    order_id: Mapped[str | None] = mapped_column(String(36))
    outcome: Mapped[str] = mapped_column(String(16), comment="posted, edited or no_card.")
    telegram_message_ids: Mapped[list[int]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_message_delivery_received_at", "received_at"),)
