"""Pool statistics: a few grouped queries, combined per network and per currency."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import utcnow
from wallet_pool.metrics import PoolLevels, PoolMetrics
from wallet_pool.pools import Pool
from wallet_pool.settings import Settings
from wallet_pool.stats import repository
from wallet_pool.stats.repository import QueueFigures, RecentActivity, WalletCounts
from wallet_pool.stats.schemas import CurrencyPoolRead, NetworkPoolRead, PoolStatsRead


async def pool_stats(
    *, session: AsyncSession, settings: Settings, metrics: PoolMetrics | None = None
) -> PoolStatsRead:
    """Per currency and per network: wallets by status, the wait queue, recent allocations and releases, and
    when free wallets run out at the recent net allocation rate."""
    now = utcnow()
    window = settings.stats_window_seconds
    wallets = await repository.wallet_counts(session)
    queues = await repository.queue_figures(session)
    activity = await repository.recent_activity(session, since=now - timedelta(seconds=window))
    if metrics:
        metrics.observe_levels(
            PoolLevels(pool, wallets.get(pool, WalletCounts()).free, queues.get(pool, QueueFigures()).length)
            for pool in set(wallets) | set(queues)
        )
    by_currency: dict[str, list[NetworkPoolRead]] = defaultdict(list)
    for pool in sorted(set(wallets) | set(queues), key=lambda p: (p.currency, p.network)):
        by_currency[pool.currency].append(
            _network(
                pool,
                wallets.get(pool, WalletCounts()),
                queues.get(pool, QueueFigures()),
                activity.get(pool, RecentActivity()),
                now=now,
                window=window,
            )
        )
    return PoolStatsRead(
        generated_at=now,
        window_seconds=window,
        currencies=[
            _currency(currency, networks, window=window) for currency, networks in by_currency.items()
        ],
    )


async def pool_levels(*, session: AsyncSession) -> list[PoolLevels]:
    """Free wallets and queue length per pool, for the gauges."""
    wallets = await repository.wallet_counts(session)
    queues = await repository.queue_figures(session)
    return [
        PoolLevels(pool, wallets.get(pool, WalletCounts()).free, queues.get(pool, QueueFigures()).length)
        for pool in set(wallets) | set(queues)
    ]


def _network(
    pool: Pool,
    wallets: WalletCounts,
    queue: QueueFigures,
    activity: RecentActivity,
    *,
    now: datetime,
    window: int,
) -> NetworkPoolRead:
    now_epoch = now.timestamp()
    return NetworkPoolRead(
        network=pool.network,
        total=wallets.total,
        free=wallets.free,
        reserved=wallets.reserved,
        disabled=wallets.disabled,
        queue_length=queue.length,
        oldest_wait_seconds=_seconds(now - queue.oldest_enqueued_at) if queue.oldest_enqueued_at else None,
        average_wait_seconds=(
            round(max(now_epoch - queue.mean_enqueued_epoch, 0.0), 1)
            if queue.mean_enqueued_epoch is not None
            else None
        ),
        allocations_in_window=activity.allocations,
        releases_in_window=activity.releases,
        free_exhausted_in_seconds=_exhausted_in(wallets.free, activity, window=window),
    )


def _currency(currency: str, networks: list[NetworkPoolRead], *, window: int) -> CurrencyPoolRead:
    queue_length = sum(n.queue_length for n in networks)
    waits = [n.oldest_wait_seconds for n in networks if n.oldest_wait_seconds is not None]
    weighted = sum((n.average_wait_seconds or 0.0) * n.queue_length for n in networks)
    activity = RecentActivity(
        allocations=sum(n.allocations_in_window for n in networks),
        releases=sum(n.releases_in_window for n in networks),
    )
    free = sum(n.free for n in networks)
    return CurrencyPoolRead(
        currency=currency,
        total=sum(n.total for n in networks),
        free=free,
        reserved=sum(n.reserved for n in networks),
        disabled=sum(n.disabled for n in networks),
        queue_length=queue_length,
        oldest_wait_seconds=max(waits) if waits else None,
        average_wait_seconds=round(weighted / queue_length, 1) if queue_length else None,
        allocations_in_window=activity.allocations,
        releases_in_window=activity.releases,
        free_exhausted_in_seconds=_exhausted_in(free, activity, window=window),
        networks=networks,
    )


def _exhausted_in(free: int, activity: RecentActivity, *, window: int) -> float | None:
    """Naive: free wallets divided by the window's net allocation rate; null when the pool is not draining."""
    net_per_second = (activity.allocations - activity.releases) / window
    if net_per_second <= 0:
        return None
    return round(free / net_per_second, 1)


def _seconds(delta: timedelta) -> float:
    return round(max(delta.total_seconds(), 0.0), 1)
