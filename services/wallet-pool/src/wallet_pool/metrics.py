"""wallet-pool's business metrics, on the app's Prometheus registry (``/metrics``).

Counters move with the business events (counted when the transaction is about to commit). The free-wallet and
queue-length gauges are recomputed by one grouped query, by the queue sweeper every
``metrics_refresh_seconds`` and by every ``GET /v1/stats``, never once per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from coin_addresses import SUPPORTED
from wallet_pool.pools import Pool


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
        pools = {Pool(c, n) for c, networks in SUPPORTED.items() for n in networks} | set(seen)
        for pool in pools:
            level = seen.get(pool)
            self.free_wallets.labels(pool.currency, pool.network).set(level.free if level else 0)
            self.queue_length.labels(pool.currency, pool.network).set(level.queue_length if level else 0)
