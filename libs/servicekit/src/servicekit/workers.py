"""Background workers started with a service and stopped before it exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from servicekit.backing import describe, is_outage

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from servicekit.db import Database

log = logging.getLogger("servicekit.workers")

OUTAGE_BACKOFF_BASE_SECONDS = 0.25
OUTAGE_BACKOFF_MAX_SECONDS = 5.0
"""A worker's pause after a pass that met a backing-store outage doubles from the base up to this."""


class PeriodicWorker:
    """Runs ``job`` every ``interval_seconds`` (sooner when it reports a full batch). A failing pass is
    logged and retried at the next interval, never fatal. Replicas coordinate inside ``job`` (``SKIP LOCKED``)."""

    def __init__(
        self, *, name: str, job: Callable[[], Awaitable[int]], interval_seconds: float, batch_size: int = 100
    ) -> None:
        self.name = name
        self.job = job
        self.interval_seconds = interval_seconds
        self.batch_size = batch_size
        self._task: asyncio.Task[None] | None = None
        self._outages = 0

    async def run_pass(self) -> int:
        """One pass of ``job``; a failure is logged and counts as nothing handled. A backing store being
        down is logged in one line and waited out, backing off longer the longer it lasts."""
        try:
            handled = await self.job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_outage(exc):
                log.exception("worker pass failed", extra={"worker": self.name})
                return 0
            self._outages += 1
            delay = backoff_delay(
                self._outages,
                base_seconds=OUTAGE_BACKOFF_BASE_SECONDS,
                max_seconds=OUTAGE_BACKOFF_MAX_SECONDS,
            ).total_seconds()
            log.warning(
                "worker pass met a backing-store outage; retrying",
                extra={"worker": self.name, "error": describe(exc), "retry_in_seconds": round(delay, 2)},
            )
            await asyncio.sleep(delay)
            return 0
        self._outages = 0
        return handled

    async def rest(self) -> None:
        """Between passes that did not fill a batch."""
        await asyncio.sleep(self.interval_seconds)

    async def run(self) -> None:
        while True:
            if await self.run_pass() < self.batch_size:
                await self.rest()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background ``task`` (if any) and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def backoff_delay(attempts: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """Exponential backoff ``min(max, base * 2**(attempts-1))``, jittered into its upper half so that
    retries of many items spread out instead of arriving together."""
    ceiling = min(max_seconds, base_seconds * 2 ** max(attempts - 1, 0))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 (jitter, not crypto)


WAKE_AFTER_COMMIT = "wake_after_commit"


def wake_after_commit(session: AsyncSession) -> None:
    """Wake the database's queue workers (outbox relay, delivery worker) once this session commits."""
    session.sync_session.info[WAKE_AFTER_COMMIT] = True


class QueueWorker(PeriodicWorker):
    """The loop of a worker that drains a database-backed queue: ``run_once`` claims and handles a batch.

    It runs again at once after a full batch, at once when woken (a commit that queued work calls
    :meth:`wake` through ``Database.after_commit_listeners``), else every ``poll_seconds``. The wake flag is
    cleared *before* each pass, so work committed during a pass is not left waiting for the next poll. A
    failing pass (a database hiccup) is logged and retried, never fatal.
    """

    def __init__(self, *, name: str, database: Database, poll_seconds: float, batch_size: int) -> None:
        super().__init__(name=name, job=self.run_once, interval_seconds=poll_seconds, batch_size=batch_size)
        self._wake = asyncio.Event()
        database.after_commit_listeners.append(self.wake)

    async def run_once(self) -> int:
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    @property
    def woken(self) -> bool:
        """Work was committed since the last pass began (a caller driving passes by hand reads it)."""
        return self._wake.is_set()

    async def run_pass(self) -> int:
        self._wake.clear()
        return await super().run_pass()

    async def rest(self) -> None:
        # Not ``asyncio.wait_for``: on Python 3.11 it can swallow a cancellation that arrives together with a
        # wake-up, and ``stop()`` would then wait for ever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval_seconds):
                await self._wake.wait()
