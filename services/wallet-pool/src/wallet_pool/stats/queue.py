"""Queue analytics: how long orders wait for an address, how many give up, when they come, and how many
wallets would keep the wait short. Derived from the ``allocation`` rows alone: ``enqueued_at`` (entered the
queue), ``allocated_at`` (handed an address), ``released_at`` (cancelled or expired, or done)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit import windows
from servicekit.db import utcnow
from wallet_pool.pools import Pool
from wallet_pool.settings import Settings
from wallet_pool.stats import capacity, repository
from wallet_pool.stats.repository import Demand, QueuedOrder, WalletCounts
from wallet_pool.stats.schemas import (
    AbandonmentRead,
    CapacityRead,
    CurrencyQueueRead,
    NetworkQueueRead,
    PeakHoursRead,
    QueueHoursRead,
    QueueStatsRead,
    WaitBucketRead,
    WaitDistributionRead,
)

WAIT_BUCKETS_SECONDS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
"""The histogram's upper bounds; a last bucket holds the longer waits."""
PERCENTILES = (50, 90, 99)
HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class QueueWindow:
    since: datetime
    until: datetime
    peak_days: int
    tz: ZoneInfo
    target_p90_wait_seconds: int


class _Common(TypedDict):
    wait: WaitDistributionRead
    abandonment: AbandonmentRead
    hourly: QueueHoursRead
    peak_hours: PeakHoursRead


@dataclass(slots=True)
class _PoolRows:
    """What the window holds for one pool (or a currency: its pools' rows together)."""

    handed_over: list[QueuedOrder] = field(default_factory=list)
    entered: list[QueuedOrder] = field(default_factory=list)
    recent: list[QueuedOrder] = field(default_factory=list)


async def queue_stats(*, session: AsyncSession, settings: Settings, window: QueueWindow) -> QueueStatsRead:
    """Per currency and network, in ``[since, until)``: the wait distribution, the abandonment rate, arrivals
    and hand-overs per hour, peak hours over the last ``peak_days`` days, and the Erlang C capacity plan."""
    now = utcnow()
    rows: dict[Pool, _PoolRows] = defaultdict(_PoolRows)
    for order in await repository.queued_orders(
        session, since=window.since, until=window.until, by="allocated"
    ):
        rows[order.pool].handed_over.append(order)
    for order in await repository.queued_orders(
        session, since=window.since, until=window.until, by="enqueued"
    ):
        rows[order.pool].entered.append(order)
    for order in await repository.queued_orders(
        session, since=now - timedelta(days=window.peak_days), until=now, by="enqueued"
    ):
        rows[order.pool].recent.append(order)
    demand = await repository.demand(session, since=window.since, until=window.until)
    wallets = await repository.wallet_counts(session)

    by_currency: dict[str, list[tuple[Pool, NetworkQueueRead]]] = defaultdict(list)
    for pool in sorted(set(rows) | set(demand) | set(wallets), key=lambda p: (p.currency, p.network)):
        figures = _pool_figures(
            pool,
            rows[pool],
            demand.get(pool, Demand()),
            wallets.get(pool, WalletCounts()),
            cooldown=int(settings.reuse_cooldown(pool.currency).total_seconds()),
            window=window,
        )
        by_currency[pool.currency].append((pool, figures))
    return QueueStatsRead(
        generated_at=now,
        since=window.since,
        until=window.until,
        peak_days=window.peak_days,
        tz=window.tz.key,
        target_p90_wait_seconds=window.target_p90_wait_seconds,
        currencies=[
            _currency_figures(currency, networks, rows=rows, window=window)
            for currency, networks in by_currency.items()
        ],
    )


def _pool_figures(
    pool: Pool, rows: _PoolRows, demand: Demand, wallets: WalletCounts, *, cooldown: int, window: QueueWindow
) -> NetworkQueueRead:
    seconds = (window.until - window.since).total_seconds()
    arrival_rate = (demand.served + demand.abandoned) / seconds
    mean_holding = demand.held_seconds / demand.releases if demand.releases else None
    usable = wallets.total - wallets.disabled
    plan = CapacityRead(
        arrival_rate_per_hour=round(arrival_rate * 3600, 4),
        mean_holding_seconds=round(mean_holding, 1) if mean_holding is not None else None,
        reuse_cooldown_seconds=cooldown,
        offered_load=None,
        usable_wallets=usable,
        recommended_wallets=0 if arrival_rate == 0 else None,
        shortfall=0 if arrival_rate == 0 else None,
        p_wait_over_target=0.0 if arrival_rate == 0 else None,
    )
    if mean_holding is not None and arrival_rate > 0:
        service_rate = 1.0 / max(mean_holding + cooldown, 1e-9)
        needed = capacity.servers_needed(
            arrival_rate=arrival_rate,
            service_rate=service_rate,
            target_wait_seconds=window.target_p90_wait_seconds,
        )
        plan = plan.model_copy(
            update={
                "offered_load": round(arrival_rate / service_rate, 4),
                "recommended_wallets": needed,
                "shortfall": max(needed - usable, 0),
                "p_wait_over_target": round(
                    capacity.probability_of_waiting_longer(
                        usable,
                        arrival_rate=arrival_rate,
                        service_rate=service_rate,
                        seconds=window.target_p90_wait_seconds,
                    ),
                    4,
                ),
            }
        )
    return NetworkQueueRead(network=pool.network, capacity=plan, **_figures(rows, window=window))


def _currency_figures(
    currency: str,
    networks: list[tuple[Pool, NetworkQueueRead]],
    *,
    rows: dict[Pool, _PoolRows],
    window: QueueWindow,
) -> CurrencyQueueRead:
    together = _PoolRows()
    for pool, _ in networks:
        together.handed_over += rows[pool].handed_over
        together.entered += rows[pool].entered
        together.recent += rows[pool].recent
    plans = [figures.capacity for _, figures in networks]
    arrivals = sum(p.arrival_rate_per_hour for p in plans)
    recommended = [p.recommended_wallets for p in plans]
    usable = sum(p.usable_wallets for p in plans)
    known = None if None in recommended else sum(r or 0 for r in recommended)
    # Mean holding over the currency: the networks' means weighted by their arrival rates.
    holding = [
        (p.mean_holding_seconds, p.arrival_rate_per_hour) for p in plans if p.mean_holding_seconds is not None
    ]
    weight = sum(rate for _, rate in holding)
    plan = CapacityRead(
        arrival_rate_per_hour=round(arrivals, 4),
        mean_holding_seconds=round(sum(m * r for m, r in holding) / weight, 1) if weight else None,
        reuse_cooldown_seconds=max((p.reuse_cooldown_seconds for p in plans), default=0),
        offered_load=None if known is None else round(sum(p.offered_load or 0.0 for p in plans), 4),
        usable_wallets=usable,
        recommended_wallets=known,
        shortfall=None if known is None else sum(p.shortfall or 0 for p in plans),
        p_wait_over_target=None,
    )
    return CurrencyQueueRead(
        currency=currency,
        capacity=plan,
        networks=[figures for _, figures in networks],
        **_figures(together, window=window),
    )


def _figures(rows: _PoolRows, *, window: QueueWindow) -> _Common:
    return {
        "wait": wait_distribution(
            [(o.allocated_at - o.enqueued_at).total_seconds() for o in rows.handed_over if o.allocated_at]
        ),
        "abandonment": _abandonment(rows.entered),
        "hourly": _hourly(rows, since=window.since, until=window.until),
        "peak_hours": peak_hours((o.enqueued_at for o in rows.recent), tz=window.tz),
    }


def nearest_rank(sorted_values: Sequence[float], percent: int) -> float | None:
    """The smallest value with at least ``percent`` % of the values at or below it."""
    if not sorted_values:
        return None
    rank = max(-(-percent * len(sorted_values) // 100), 1)
    return sorted_values[rank - 1]


def wait_distribution(waits: Iterable[float]) -> WaitDistributionRead:
    ordered = sorted(max(w, 0.0) for w in waits)
    counts = Counter(_bucket(w) for w in ordered)
    p50, p90, p99 = (nearest_rank(ordered, p) for p in PERCENTILES)
    return WaitDistributionRead(
        handed_over=len(ordered),
        p50_seconds=None if p50 is None else round(p50, 3),
        p90_seconds=None if p90 is None else round(p90, 3),
        p99_seconds=None if p99 is None else round(p99, 3),
        histogram=[
            WaitBucketRead(le_seconds=bound, count=counts[bound])
            for bound in (*map(float, WAIT_BUCKETS_SECONDS), None)
        ],
    )


def _bucket(wait: float) -> float | None:
    return next((float(b) for b in WAIT_BUCKETS_SECONDS if wait <= b), None)


def _abandonment(entered: list[QueuedOrder]) -> AbandonmentRead:
    handed = sum(1 for o in entered if o.allocated_at is not None)
    abandoned = sum(1 for o in entered if o.allocated_at is None and o.released_at is not None)
    return AbandonmentRead(
        queued=len(entered),
        handed_over=handed,
        abandoned=abandoned,
        still_waiting=len(entered) - handed - abandoned,
        rate=round(abandoned / len(entered), 4) if entered else None,
    )


def _hourly(rows: _PoolRows, *, since: datetime, until: datetime) -> QueueHoursRead:
    def hour_of(moment: datetime) -> datetime:
        return moment.replace(minute=0, second=0, microsecond=0)

    arrivals = Counter(hour_of(o.enqueued_at) for o in rows.entered)
    hand_overs = Counter(hour_of(o.allocated_at) for o in rows.handed_over if o.allocated_at)
    first = hour_of(since)
    hours = [first + n * HOUR for n in range(math.ceil((until - first) / HOUR))]
    return QueueHoursRead(
        first_hour=first, arrivals=[arrivals[h] for h in hours], hand_overs=[hand_overs[h] for h in hours]
    )


def peak_hours(arrivals: Iterable[datetime], *, tz: ZoneInfo) -> PeakHoursRead:
    counts = Counter(moment.astimezone(tz).hour for moment in arrivals)
    peak = max(range(24), key=lambda h: (counts[h], -h)) if counts else None
    return PeakHoursRead(peak_hour=peak, arrivals_by_hour_of_day=[counts[h] for h in range(24)])


MAX_WINDOW = timedelta(days=31)
DEFAULT_WINDOW = timedelta(hours=24)


def queue_window(
    *,
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    days: int | None,
    peak_days: int,
    tz: str,
    target_p90_wait_seconds: int | None,
) -> QueueWindow:
    """The request's window, checked: ``[since, until)`` (default the last 24 hours) or the last ``days`` days,
    at most 31 days long; ``tz`` an IANA time zone."""
    start, end = windows.window(
        since=since, until=until, days=days, now=utcnow(), default=DEFAULT_WINDOW, longest=MAX_WINDOW
    )
    return QueueWindow(
        since=start,
        until=end,
        peak_days=peak_days,
        tz=windows.time_zone(tz),
        target_p90_wait_seconds=target_p90_wait_seconds or settings.queue_target_p90_wait_seconds,
    )
