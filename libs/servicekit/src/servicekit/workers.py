"""Background workers started with a service and stopped before it exits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("servicekit.workers")


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

    async def run(self) -> None:
        while True:
            try:
                handled = await self.job()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker pass failed", extra={"worker": self.name})
                handled = 0
            if handled < self.batch_size:
                await asyncio.sleep(self.interval_seconds)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
