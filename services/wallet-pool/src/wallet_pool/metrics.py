"""wallet-pool's business metrics, on the app's Prometheus registry (``/metrics``).

Counters move with the business events (counted when the transaction is about to commit). The free-wallet and
queue-length gauges are recomputed by one grouped query, by the queue sweeper every
``metrics_refresh_seconds`` and by every ``GET /v1/stats``, never once per request. How long the oldest
waiting order has waited per pool (``wallet_pool_queue_oldest_wait_seconds``) is read when Prometheus scrapes
(:class:`QueueWaitGauges`, at most once a second), so it grows between sweeps as the wait does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from coin_addresses import SUPPORTED
from servicekit.db import Database, utcnow
from servicekit.metrics import ScrapedGauges
from wallet_pool.pools import Pool
from wallet_pool.stats.repository import queue_figures


@dataclass(frozen=True, slots=True)
class PoolLevels:
    pool: Pool
    free: int
    queue_length: int


class PoolMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        labels = ["currency", "network"]
        self.allocations = Counter(
            "wallet_pool_allocations_total",
            "New allocation requests by result: allocated at once or queued",
            [*labels, "result"],
            registry=registry,
        )
        self.queue_assignments = Counter(
            "wallet_pool_queue_assignments_total",
            "Wallets handed to waiting orders",
            labels,
            registry=registry,
        )
        self.releases = Counter(
            "wallet_pool_releases_total",
            "Allocations released, by what the order held: a wallet or a place in the queue",
            [*labels, "held"],
            registry=registry,
        )
        self.free_wallets = Gauge(
            "wallet_pool_free_wallets", "Free wallets per pool", labels, registry=registry
        )
        self.queue_length = Gauge(
            "wallet_pool_queue_length", "Orders waiting for an address per pool", labels, registry=registry
        )

    def allocated(self, pool: Pool) -> None:
        self.allocations.labels(pool.currency, pool.network, "allocated").inc()

    def queued(self, pool: Pool) -> None:
        self.allocations.labels(pool.currency, pool.network, "queued").inc()

    def assigned_from_queue(self, pool: Pool, count: int = 1) -> None:
        self.queue_assignments.labels(pool.currency, pool.network).inc(count)

    def released(self, pool: Pool, *, held: str) -> None:
        self.releases.labels(pool.currency, pool.network, held).inc()

    def observe_levels(self, levels: Iterable[PoolLevels]) -> None:
        """Set both gauges for every pool: the ones given, and zero for supported pools not mentioned."""
        seen: dict[Pool, PoolLevels] = {level.pool: level for level in levels}
        pools = supported_pools() | set(seen)
        for pool in pools:
            level = seen.get(pool)
            self.free_wallets.labels(pool.currency, pool.network).set(level.free if level else 0)
            self.queue_length.labels(pool.currency, pool.network).set(level.queue_length if level else 0)


def supported_pools() -> set[Pool]:
    return {Pool(c, n) for c, networks in SUPPORTED.items() for n in networks}


class QueueWaitGauges(ScrapedGauges):
    """``wallet_pool_queue_oldest_wait_seconds{currency,network}``: how long the order first in line of each
    pool has waited for an address (0 when none waits; every supported pool reported)."""

    name = "wallet_pool_queue_oldest_wait_seconds"

    def __init__(self, *, database: Database) -> None:
        super().__init__()
        self.database = database
        self.oldest: dict[Pool, datetime | None] = {}

    async def read_figures(self) -> None:
        async with self.database.sessionmaker() as session:
            self.oldest = {pool: q.oldest_enqueued_at for pool, q in (await queue_figures(session)).items()}

    def collect(self) -> Iterable[Metric]:
        now = utcnow()
        family = GaugeMetricFamily(
            self.name,
            "How long the oldest order waiting for an address of the pool has waited (0 when none waits)",
            labels=["currency", "network"],
        )
        for pool in sorted(supported_pools() | set(self.oldest), key=lambda p: (p.currency, p.network)):
            oldest = self.oldest.get(pool)
            age = (now - oldest).total_seconds() if oldest is not None else 0.0
            family.add_metric([pool.currency, pool.network], max(age, 0.0))
        return [family]
