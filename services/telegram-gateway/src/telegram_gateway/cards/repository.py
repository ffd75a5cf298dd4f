"""The cards' queries: the order snapshot's upsert that locks it for the transaction, and the order's posted
cards. Repositories only execute; the caller commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import upsert
from telegram_gateway.cards.models import MessageKind, OrderSnapshot, PostedMessage

CARD_KINDS = (MessageKind.ORDER_CARD.value, MessageKind.ESCALATION_CARD.value)


async def locked_snapshot(
    session: AsyncSession, *, order_id: str, version: int, order: dict[str, Any], now: datetime
) -> OrderSnapshot:
    """The order's snapshot (created from ``version`` and ``order`` when the order is new), locked for this
    transaction: the upsert takes the row lock on PostgreSQL and the write lock on SQLite alike."""
    await session.execute(
        upsert(
            session,
            OrderSnapshot,
            {"order_id": order_id, "version": version, "order": order, "escalated": False, "updated_at": now},
            conflict=["order_id"],
            update={"updated_at": now},
        )
    )
    snapshot = await session.scalar(
        select(OrderSnapshot)
        .where(OrderSnapshot.order_id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if snapshot is None:  # pragma: no cover - the upsert above guarantees the row
        raise LookupError(order_id)
    return snapshot


async def cards_of_order(session: AsyncSession, *, order_id: str) -> list[PostedMessage]:
    """The order's cards, oldest first."""
    rows = await session.scalars(
        select(PostedMessage)
        .where(PostedMessage.order_id == order_id, PostedMessage.kind.in_(CARD_KINDS))
        .order_by(PostedMessage.id)
    )
    return list(rows)


async def has_order_card(session: AsyncSession, *, order_id: str, chat_id: int) -> bool:
    """Whether the order's card was posted to ``chat_id``."""
    known = await session.scalar(
        select(PostedMessage.id)
        .where(
            PostedMessage.order_id == order_id,
            PostedMessage.chat_id == chat_id,
            PostedMessage.kind == MessageKind.ORDER_CARD.value,
        )
        .limit(1)
    )
    return known is not None
