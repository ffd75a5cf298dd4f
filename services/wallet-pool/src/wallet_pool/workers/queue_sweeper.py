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

import asyncio
import contextlib
import logging
import time
from datetime import datetime

from servicekit.db import Database
from wallet_pool.allocations.service import hand_rested_wallets_to_waiting_orders, pools_to_sweep
from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings
from wallet_pool.stats.service import pool_levels

log = logging.getLogger("wallet_pool.sweeper")


class QueueSweeper:
    def __init__(self, *, database: Database, settings: Settings, metrics: PoolMetrics | None = None) -> None:
        self.database = database
        self.settings = settings
        self.metrics = metrics
        self._task: asyncio.Task[None] | None = None
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

    async def run(self) -> None:
        """Sweep until cancelled; a failed pass is logged and retried on the next tick, never fatal."""
        while True:
            try:
                await self.sweep_once()
                if self.metrics is not None and time.monotonic() >= self._gauges_due:
                    await self.refresh_gauges()
                    self._gauges_due = time.monotonic() + self.settings.metrics_refresh_seconds
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue sweep failed")
            await asyncio.sleep(self.settings.queue_sweep_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="queue-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
