"""The pool-level watch: every ``pool_watch_seconds``, each pool's free addresses are judged against its
thresholds (``levels.service``), and each crossing is announced."""

from __future__ import annotations

import sys

from servicekit.db import Database
from servicekit.workers import PeriodicWorker
from wallet_pool.levels.service import watch_pool_levels
from wallet_pool.settings import Settings


def pool_level_watch(*, database: Database, settings: Settings) -> PeriodicWorker:
    return PeriodicWorker(
        name="pool-level-watch",
        job=lambda: watch_pool_levels(database=database, settings=settings),
        interval_seconds=settings.pool_watch_seconds,
        batch_size=sys.maxsize,  # a pass covers every pool
    )
