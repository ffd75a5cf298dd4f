"""Forgetting what no longer matters: deliveries, alerts and cards of orders untouched for the retention
period (an order closes within hours; its card can stay in the chat, the gateway just stops editing it)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select

from servicekit.db import Database, utcnow
from telegram_gateway.cards.models import MessageKind, OrderSnapshot, PostedMessage
from telegram_gateway.messages.models import MessageDelivery


async def forget_old_messages(*, database: Database, retention: timedelta) -> int:
    """Delete rows older than ``retention``; returns how many. Idempotent, safe on any replica."""
    cutoff = utcnow() - retention
    removed = 0
    async with database.sessionmaker.begin() as session:
        stale_orders = select(OrderSnapshot.order_id).where(OrderSnapshot.updated_at < cutoff)
        for statement in (
            delete(PostedMessage).where(PostedMessage.order_id.in_(stale_orders)),
            delete(PostedMessage).where(
                PostedMessage.kind == MessageKind.ALERT.value, PostedMessage.posted_at < cutoff
            ),
            delete(OrderSnapshot).where(OrderSnapshot.updated_at < cutoff),
            delete(MessageDelivery).where(MessageDelivery.received_at < cutoff),
        ):
            result = await session.execute(statement)
            removed += int(result.rowcount)  # type: ignore[attr-defined]
    return removed
