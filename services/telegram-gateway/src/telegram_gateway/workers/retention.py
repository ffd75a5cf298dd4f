"""Forgetting what no longer matters: deliveries, alerts and cards of orders untouched for the retention
period (an order closes within hours; its card can stay in the chat, the gateway just stops editing it).
The rules run in the service's retention sweep (``servicekit.retention``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from servicekit.db import Database
from servicekit.retention import RetentionRule, forget_expired
from telegram_gateway.cards.models import MessageKind, OrderSnapshot, PostedMessage
from telegram_gateway.completions.models import CompletionDraft
from telegram_gateway.messages.models import MessageDelivery


def message_retention(retention: timedelta) -> list[RetentionRule]:
    """The cards of orders untouched for ``retention`` (aged by their order's snapshot, so they go before
    it), alerts and snapshots older than that, the record of deliveries received before then, and
    completion drafts that expired (at once: an expired draft completes nothing)."""
    cards, snapshots, deliveries = PostedMessage.__table__, OrderSnapshot.__table__, MessageDelivery.__table__
    order_touched = (
        select(snapshots.c.updated_at).where(snapshots.c.order_id == cards.c.order_id).scalar_subquery()
    )
    return [
        RetentionRule(name="cards of untouched orders", table=cards, timestamp=order_touched, keep=retention),
        RetentionRule(
            name="alerts",
            table=cards,
            timestamp=cards.c.posted_at,
            keep=retention,
            finished=cards.c.kind == MessageKind.ALERT.value,
        ),
        RetentionRule(
            name="order snapshots", table=snapshots, timestamp=snapshots.c.updated_at, keep=retention
        ),
        RetentionRule(
            name="deliveries", table=deliveries, timestamp=deliveries.c.received_at, keep=retention
        ),
        RetentionRule(
            name="expired completion drafts",
            table=CompletionDraft.__table__,
            timestamp=CompletionDraft.__table__.c.expires_at,
            keep=timedelta(0),
        ),
    ]


async def forget_old_messages(*, database: Database, retention: timedelta) -> int:
    """Delete rows older than ``retention`` now; returns how many. Idempotent, safe on any replica."""
    return await forget_expired(database=database, rules=message_retention(retention))
