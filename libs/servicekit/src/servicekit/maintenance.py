"""Vacuuming a service's busiest tables from the service itself.

A table whose rows are rewritten all the time (wallet-pool's wallets, every outbox) leaves dead row versions
behind, and until a vacuum removes them their entries stay in the indexes: a partial index walked from its
head (the FIFO pick over free wallets, the relay's pending events) steps over all of them. Measured on this
project's PostgreSQL, the ``SKIP LOCKED`` wallet pick fell from ~3,900 to ~1,300 TPS within ten seconds of
churn. The migrations give such tables aggressive per-table autovacuum settings, but those do nothing where
the server runs with ``autovacuum = off`` (as the development and CI server does), and autovacuum's naptime
(a minute by default) is server-wide. So every ``vacuum_check_seconds`` a service counts the dead rows of its
busy tables (``pg_stat_user_tables``) and vacuums one that passed ``vacuum_dead_rows_threshold``. ``VACUUM``
blocks neither reads nor writes; a replica that finds a table already being vacuumed waits for it, which is
harmless. SQLite has no dead index entries of this kind: nothing to do there. ``make bench``
(``bench/pick_churn.py``) shows the wallet pick with and without it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text

from servicekit.db import Database


async def vacuum_busy_tables(*, database: Database, tables: Collection[str], dead_rows_threshold: int) -> int:
    """One pass: ``VACUUM (ANALYZE)`` each of ``tables`` (in the service's schema) holding at least
    ``dead_rows_threshold`` dead rows. Returns how many were vacuumed."""
    if database.engine.dialect.name != "postgresql" or not tables:
        return 0
    vacuumed = 0
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
        rows = await autocommit.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname = ANY(:tables) AND n_dead_tup >= :threshold"
            ),
            {"tables": list(tables), "threshold": dead_rows_threshold},
        )
        for (table,) in rows.all():
            if table in tables:  # a name the service declared, never input
                await autocommit.execute(text(f'VACUUM (ANALYZE) "{table}"'))
                vacuumed += 1
    return vacuumed
