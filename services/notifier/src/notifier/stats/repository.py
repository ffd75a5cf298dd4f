"""The delivery figures' queries: aggregates over notifications and their attempts, and nearest-rank latency
percentiles ranked with a window function (PostgreSQL and SQLite alike). Repositories only execute."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.notifications.models import AttemptOutcome, DeliveryAttempt, Notification
from notifier.notifications.models import NotificationStatus as Status
from servicekit.db import epoch_seconds

PERCENTILES = (50, 95, 99)


async def latency_percentiles(
    session: AsyncSession, *, since: datetime, until: datetime, by_template: bool
) -> dict[tuple[str, ...], dict[int, float | None]]:
    """Nearest-rank percentiles of the time to send: the smallest value whose rank ``rn`` has
    ``rn * 100 >= p * n`` (integer arithmetic: no ``ceil`` needed, which SQLite may lack)."""
    n = Notification
    keys = [n.channel, n.template] if by_template else [n.channel]
    latency = (epoch_seconds(n.sent_at) - epoch_seconds(n.created_at)).label("latency")
    ranked = (
        select(
            *keys,
            latency,
            func.row_number().over(partition_by=keys, order_by=latency).label("rn"),
            func.count().over(partition_by=keys).label("total"),
        )
        .where(n.created_at >= since, n.created_at < until, n.status == Status.sent.value)
        .subquery()
    )
    group = [ranked.c.channel, ranked.c.template] if by_template else [ranked.c.channel]
    query = select(
        *group,
        *(
            func.min(case((ranked.c.rn * 100 >= ranked.c.total * p, ranked.c.latency))).label(f"p{p}")
            for p in PERCENTILES
        ),
    ).group_by(*group)
    result: dict[tuple[str, ...], dict[int, float | None]] = {}
    for row in (await session.execute(query)).all():
        values = row._mapping
        key = tuple(str(values[c.name]) for c in group)
        result[key] = {
            p: (round(float(values[f"p{p}"]), 3) if values[f"p{p}"] is not None else None)
            for p in PERCENTILES
        }
    return result


async def notification_counts(
    session: AsyncSession, *, since: datetime, until: datetime
) -> Sequence[Row[Any]]:
    """``(channel, template, total, sent, pending, failed, dead)`` of the notifications queued in the window."""
    n = Notification
    window = (n.created_at >= since, n.created_at < until)

    def of_status(status: Status) -> ColumnElement[int]:
        return func.count().filter(n.status == status.value)

    counts = (
        select(
            n.channel,
            n.template,
            func.count(),
            of_status(Status.sent),
            of_status(Status.pending),
            of_status(Status.failed),
            of_status(Status.dead),
        )
        .where(*window)
        .group_by(n.channel, n.template)
    )
    return (await session.execute(counts)).all()


async def attempt_counts(session: AsyncSession, *, since: datetime, until: datetime) -> Sequence[Row[Any]]:
    """``(channel, template, attempts, transient, permanent, retries)`` of the attempts made for the
    notifications queued in the window."""
    n, a = Notification, DeliveryAttempt
    window = (n.created_at >= since, n.created_at < until)
    attempts = (
        select(
            n.channel,
            n.template,
            func.count(a.id),
            func.count().filter(a.outcome == AttemptOutcome.transient.value),
            func.count().filter(a.outcome == AttemptOutcome.permanent.value),
            func.count().filter(a.attempt > 1),
        )
        .select_from(a)
        .join(n, n.id == a.notification_id)
        .where(*window)
        .group_by(n.channel, n.template)
    )
    return (await session.execute(attempts)).all()


async def attempts_by_channel(session: AsyncSession, *, since: datetime) -> dict[str, tuple[int, int]]:
    """Per channel with any, the attempts made since ``since`` and how many failed."""
    n, a = Notification, DeliveryAttempt
    query = (
        select(n.channel, func.count(a.id), func.count().filter(a.outcome != AttemptOutcome.sent.value))
        .select_from(a)
        .join(n, n.id == a.notification_id)
        .where(a.started_at >= since)
        .group_by(n.channel)
    )
    return {channel: (made, failed) for channel, made, failed in (await session.execute(query)).all()}
