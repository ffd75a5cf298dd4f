"""Delivery figures in SQL (PostgreSQL and SQLite alike).

``GET /v1/stats/delivery`` looks at the notifications *queued* in a window and every attempt made for them;
latency percentiles (queued → accepted) are nearest-rank, ranked with a window function, so both databases
compute them without an aggregate neither of them shares. The failure-rate alert instead looks at the
*attempts made* in its window, whatever their notification's age.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.alerts.conditions import FailureFigures
from notifier.notifications.models import AttemptOutcome, Channel, DeliveryAttempt, Notification
from notifier.notifications.models import NotificationStatus as Status
from notifier.stats.schemas import (
    ChannelFigures,
    DeliveryFigures,
    DeliveryStatsRead,
    LatencyRead,
    TemplateFigures,
)
from servicekit.db import epoch_seconds

PERCENTILES = (50, 95, 99)


@dataclass
class _Tally:
    notifications: int = 0
    sent: int = 0
    pending: int = 0
    permanent: int = 0
    dead: int = 0
    attempts: int = 0
    failed_attempts: int = 0
    permanent_attempts: int = 0
    retries: int = 0
    latency: dict[int, float | None] = field(default_factory=dict)

    def add(self, other: _Tally) -> None:
        for name in (
            "notifications",
            "sent",
            "pending",
            "permanent",
            "dead",
            "attempts",
            "failed_attempts",
            "permanent_attempts",
            "retries",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def figures(self) -> dict[str, Any]:
        failed = self.failed_attempts + self.permanent_attempts
        return DeliveryFigures(
            notifications=self.notifications,
            sent=self.sent,
            pending=self.pending,
            permanent=self.permanent,
            dead=self.dead,
            attempts=self.attempts,
            failed_attempts=self.failed_attempts,
            retries=self.retries,
            failure_percent=round(100.0 * failed / self.attempts, 2) if self.attempts else None,
            latency_seconds=LatencyRead(
                p50=self.latency.get(50), p95=self.latency.get(95), p99=self.latency.get(99)
            ),
        ).model_dump()


async def _percentiles(
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


async def delivery_stats(*, session: AsyncSession, since: datetime, until: datetime) -> DeliveryStatsRead:
    n, a = Notification, DeliveryAttempt
    window = (n.created_at >= since, n.created_at < until)

    def of_status(status: Status) -> ColumnElement[int]:
        return func.count().filter(n.status == status.value)

    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
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
    for channel, template, total, sent, pending, permanent, dead in (await session.execute(counts)).all():
        tally = tallies[(channel, template)]
        tally.notifications, tally.sent, tally.pending, tally.permanent, tally.dead = (
            total,
            sent,
            pending,
            permanent,
            dead,
        )
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
    for channel, template, made, transient, permanent, retries in (await session.execute(attempts)).all():
        tally = tallies[(channel, template)]
        tally.attempts, tally.failed_attempts, tally.permanent_attempts, tally.retries = (
            made,
            transient,
            permanent,
            retries,
        )
    by_template = await _percentiles(session, since=since, until=until, by_template=True)
    by_channel = await _percentiles(session, since=since, until=until, by_template=False)

    channels: dict[str, _Tally] = defaultdict(_Tally)
    templates: list[TemplateFigures] = []
    for (channel, template), tally in sorted(tallies.items()):
        tally.latency = by_template.get((channel, template), {})
        channels[channel].add(tally)
        templates.append(TemplateFigures(channel=Channel(channel), template=template, **tally.figures()))
    for channel, tally in channels.items():
        tally.latency = by_channel.get((channel,), {})
    return DeliveryStatsRead(
        since=since,
        until=until,
        channels=[
            ChannelFigures(channel=Channel(channel), **tally.figures())
            for channel, tally in sorted(channels.items())
        ],
        templates=templates,
    )


async def failure_figures(*, session: AsyncSession, since: datetime) -> list[FailureFigures]:
    """Per channel, the attempts made since ``since`` and how many failed; every channel is listed."""
    n, a = Notification, DeliveryAttempt
    query = (
        select(n.channel, func.count(a.id), func.count().filter(a.outcome != AttemptOutcome.sent.value))
        .select_from(a)
        .join(n, n.id == a.notification_id)
        .where(a.started_at >= since)
        .group_by(n.channel)
    )
    found = {channel: (made, failed) for channel, made, failed in (await session.execute(query)).all()}
    return [FailureFigures(channel.value, *found.get(channel.value, (0, 0))) for channel in Channel]
