"""Vacuuming a service's busiest tables from the service itself.

A table whose rows are rewritten all the time (wallet-pool's wallets, every outbox) leaves dead row versions
behind, and until a vacuum removes them their entries stay in the indexes: a partial index walked from its
head (the FIFO pick over free wallets, the relay's pending events) steps over all of them. Measured on this
project's PostgreSQL, the ``SKIP LOCKED`` wallet pick fell from ~3,900 to ~1,300 TPS within ten seconds of
churn. The migrations give such tables aggressive per-table autovacuum settings, but those do nothing where
the server runs with ``autovacuum = off`` (as the development and CI server does), and autovacuum's naptime
(a minute by default) is server-wide. So where the server's autovacuum is off (``busy_table_vacuum``:
``auto`` asks ``SHOW autovacuum`` once; ``on`` and ``off`` force it), every ``vacuum_check_seconds`` a service
counts the dead rows of its busy tables (``pg_stat_user_tables``) and vacuums one that passed ``vacuum_dead_rows_threshold`` (analyzing it
too once its statistics are out of date). ``VACUUM`` blocks neither reads nor writes; a replica that finds a
table already being vacuumed waits for it, which is harmless. SQLite has no dead index entries of this kind:
nothing to do there. ``make bench`` (``bench/pick_churn.py``) shows the wallet pick with and without it.
Where the server vacuums (production), the services leave it to the server: one vacuum per table, not one
per replica every few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Literal

from sqlalchemy import text

from servicekit.db import Database

logger = logging.getLogger(__name__)

BusyTableVacuumMode = Literal["auto", "on", "off"]


async def server_autovacuum(database: Database) -> bool:
    """Whether the PostgreSQL server runs autovacuum (``SHOW autovacuum``)."""
    async with database.engine.connect() as connection:
        setting = await connection.scalar(text("SHOW autovacuum"))
    return bool(setting == "on")


class BusyTableVacuum:
    """The service's own vacuum of its busy tables, on or off by ``mode``; with ``auto``, on only where the
    server answers that its autovacuum is off (asked at the first pass, then kept: a pass that cannot reach the
    database asks again at the next). ``ask_server``: how the server is asked (tests give it an answer)."""

    def __init__(
        self,
        *,
        database: Database,
        tables: Collection[str],
        dead_rows_threshold: int,
        mode: BusyTableVacuumMode,
        ask_server: Callable[[Database], Awaitable[bool]] = server_autovacuum,
    ) -> None:
        self.database = database
        self.tables = tables
        self.dead_rows_threshold = dead_rows_threshold
        self.mode = mode
        self.ask_server = ask_server
        self.enabled: bool | None = {"on": True, "off": False}.get(mode)
        """Whether passes vacuum (``None``: not decided yet, ``auto`` before its first pass)."""

    async def decide(self) -> bool:
        if self.enabled is None:
            server_vacuums = await self.ask_server(self.database)
            self.enabled = not server_vacuums
            logger.info(
                "busy-table vacuum %s: the server's autovacuum is %s",
                "on" if self.enabled else "off",
                "on" if server_vacuums else "off",
            )
        return self.enabled

    async def run(self) -> int:
        """One pass (see :func:`vacuum_busy_tables`), or nothing where it is off."""
        if not self.database.is_postgres or not await self.decide():
            return 0
        return await vacuum_busy_tables(
            database=self.database, tables=self.tables, dead_rows_threshold=self.dead_rows_threshold
        )


async def vacuum_busy_tables(*, database: Database, tables: Collection[str], dead_rows_threshold: int) -> int:
    """One pass over ``tables`` (in the service's schema): ``VACUUM`` each holding at least
    ``dead_rows_threshold`` dead rows, and ``ANALYZE`` each in which as many rows changed since its last
    analysis as it holds (at least the threshold), its statistics then being out of date. Not on every vacuum:
    an ``ANALYZE`` invalidates every cached plan on the table, and each connection of each service then plans
    its statements again, a CPU burst that made the order bench's slowest requests. Returns how many tables
    were vacuumed or analyzed."""
    if not database.is_postgres or not tables:  # SQLite needs no vacuuming here
        return 0
    done = 0
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
        rows = await autocommit.execute(
            text(
                "SELECT relname, to_vacuum, to_analyze FROM ("
                " SELECT relname, n_dead_tup >= :threshold AS to_vacuum,"
                " n_mod_since_analyze >= greatest(:threshold, n_live_tup) AS to_analyze"
                " FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(:tables)"
                ") AS busy WHERE to_vacuum OR to_analyze"
            ),
            {"tables": list(tables), "threshold": dead_rows_threshold},
        )
        for table, vacuum, analyze in rows.all():
            if table not in tables:  # only names the service declared, never input
                continue
            command = "VACUUM (ANALYZE)" if vacuum and analyze else "VACUUM" if vacuum else "ANALYZE"
            await autocommit.execute(text(f'{command} "{table}"'))
            done += 1
    return done
