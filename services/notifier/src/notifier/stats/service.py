"""Delivery figures, from the aggregates in ``notifier.stats.repository``.

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

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.alerts.conditions import FailureFigures
from notifier.notifications.models import Channel
from notifier.stats import repository
from notifier.stats.schemas import (
    ChannelFigures,
    DeliveryFigures,
    DeliveryStatsRead,
    LatencyRead,
    TemplateFigures,
)


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


async def delivery_stats(*, session: AsyncSession, since: datetime, until: datetime) -> DeliveryStatsRead:
    tallies: dict[tuple[str, str], _Tally] = defaultdict(_Tally)
    counts = await repository.notification_counts(session, since=since, until=until)
    for channel, template, total, sent, pending, permanent, dead in counts:
        tally = tallies[(channel, template)]
        tally.notifications, tally.sent, tally.pending, tally.permanent, tally.dead = (
            total,
            sent,
            pending,
            permanent,
            dead,
        )
    attempts = await repository.attempt_counts(session, since=since, until=until)
    for channel, template, made, transient, permanent, retries in attempts:
        tally = tallies[(channel, template)]
        tally.attempts, tally.failed_attempts, tally.permanent_attempts, tally.retries = (
            made,
            transient,
            permanent,
            retries,
        )
    by_template = await repository.latency_percentiles(session, since=since, until=until, by_template=True)
    by_channel = await repository.latency_percentiles(session, since=since, until=until, by_template=False)

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
    found = await repository.attempts_by_channel(session, since=since)
    return [FailureFigures(channel.value, *found.get(channel.value, (0, 0))) for channel in Channel]
