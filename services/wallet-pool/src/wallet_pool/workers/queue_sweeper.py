"""The queue sweeper: hands wallets whose reuse cool-down has passed to the orders waiting for them.

A release hands its wallet to the head of the queue in its own transaction when it may be reused at once.
With a cool-down the wallet rests instead, and nobody is releasing when the rest ends, so this worker looks
every ``queue_sweep_seconds`` for pools where orders wait while a wallet is free and serves their queues
under the pool lock (it skips a pool whose lock another transaction holds: that one serves the queue). Any
number of replicas may run it side by side. It also repairs the one situation the request paths cannot
prevent alone (a transaction that picked a wallet and then rolled back), and refreshes the pool gauges every
``metrics_refresh_seconds``.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime

from servicekit.db import Database
from servicekit.workers import PeriodicWorker
from wallet_pool.allocations.service import hand_rested_wallets_to_waiting_orders, pools_to_sweep
from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings
from wallet_pool.stats.service import pool_levels


class QueueSweeper:
    """The sweeper's passes; :meth:`worker` runs them every ``queue_sweep_seconds`` in the background."""

    def __init__(self, *, database: Database, settings: Settings, metrics: PoolMetrics | None = None) -> None:
        self.database = database
        self.settings = settings
        self.metrics = metrics
        self._gauges_due = 0.0

    async def sweep_once(self, *, now: datetime | None = None) -> int:
        """One pass over every pool that needs it; returns how many waiting orders got a wallet."""
        async with self.database.sessionmaker() as session:
            pools = await pools_to_sweep(session=session)
        handed = 0
        for pool in pools:
            async with self.database.sessionmaker.begin() as session:
                handed += await hand_rested_wallets_to_waiting_orders(
                    session=session, settings=self.settings, pool=pool, now=now, metrics=self.metrics
                )
        return handed

    async def refresh_gauges(self) -> None:
        if self.metrics is None:
            return
        async with self.database.sessionmaker() as session:
            self.metrics.observe_levels(await pool_levels(session=session))

    async def run_once(self) -> int:
        """A sweep, and the gauges when they are due."""
        handed = await self.sweep_once()
        if self.metrics is not None and time.monotonic() >= self._gauges_due:
            await self.refresh_gauges()
            self._gauges_due = time.monotonic() + self.settings.metrics_refresh_seconds
        return handed

    def worker(self) -> PeriodicWorker:
        # A pass serves every pool completely, so there is never a backlog to run again for at once.
        return PeriodicWorker(
            name="queue-sweeper",
            job=self.run_once,
            interval_seconds=self.settings.queue_sweep_seconds,
            batch_size=sys.maxsize,
        )
