"""``order_snapshot`` (the newest state of each order the gateway has seen) and ``posted_message`` (every
Telegram message the gateway posted, so later edits reach the right cards, also after a restart)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from telegram_gateway.db import Base


class MessageKind(enum.StrEnum):
    ORDER_CARD = "order_card"  # the operators' card, with the buttons of the order's state
    ESCALATION_CARD = "escalation_card"  # support's card for an escalated order, without buttons
    ALERT = "alert"


class OrderSnapshot(Base):
    """The newest version of an order seen, from the notifier or from order-api's own answers. Deliveries
    arrive out of order: an older ``version`` never replaces a newer one. The escalation flag does not bump
    the order's version, so it is kept beside it."""

    __tablename__ = "order_snapshot"

    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    order: Mapped[dict[str, Any]] = mapped_column(JSON, comment="The order as rendered (OrderView).")
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    escalation_note: Mapped[str | None] = mapped_column(Text, comment="Why it was escalated.")
    resolution_note: Mapped[str | None] = mapped_column(Text, comment="How support resolved it.")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, comment="Last time any update was seen.")

    __table_args__ = (Index("ix_order_snapshot_updated_at", "updated_at"),)


class PostedMessage(Base):
    """One message the bot posted. Order cards are re-rendered from the order's snapshot and edited only
    when what they would show differs from what they show (``rendered_digest``)."""

    __tablename__ = "posted_message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger, comment="Telegram's id of the message in its chat.")
    kind: Mapped[str] = mapped_column(String(16))
    order_id: Mapped[str | None] = mapped_column(String(36))
    posted_for: Mapped[str | None] = mapped_column(
        String(40), comment="The event that posted it (order.created, order.released ...)."
    )
    delivery_id: Mapped[str | None] = mapped_column(
        String(36), comment="message_id of the POST /v1/messages that posted it."
    )
    rendered_version: Mapped[int | None] = mapped_column(Integer, comment="Order version it shows.")
    rendered_digest: Mapped[str | None] = mapped_column(String(64), comment="SHA-256 of text and buttons.")
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("chat_id", "message_id"),
        Index("ix_posted_message_order_id", "order_id"),
        Index("ix_posted_message_posted_at", "posted_at"),
    )
