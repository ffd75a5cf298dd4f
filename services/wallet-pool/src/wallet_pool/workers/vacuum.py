"""Vacuuming the hot tables from the service itself.

Every allocation and release rewrites a wallet row. Until a vacuum removes the dead versions, their entries
stay at the head of the partial index the FIFO pick walks (``ix_wallet_free_fifo``), and every pick steps over
all of them: measured on this project's PostgreSQL, the ``SKIP LOCKED`` pick fell from ~3,900 to ~1,300 TPS
within ten seconds of churn. The migrations give the hot tables aggressive per-table autovacuum settings, but
those do nothing where the server runs with ``autovacuum = off`` (as the development and CI server does) and
autovacuum's naptime (a minute by default) is server-wide. So wallet-pool also checks, every
``vacuum_check_seconds``, how many dead rows its hot tables hold (``pg_stat_user_tables``) and vacuums a table
that passed ``vacuum_dead_rows_threshold``. ``VACUUM`` does not block reads or writes; a replica that finds a
table already being vacuumed waits for it, which is harmless. SQLite has no dead index entries of this kind:
nothing to do there. ``make bench`` (``bench/pick_churn.py``) shows the pick with and without it.
"""

from __future__ import annotations

from sqlalchemy import text

from servicekit.db import Database

HOT_TABLES = ("wallet", "allocation", "wait_queue_entry", "outbox")


async def vacuum_hot_tables(*, database: Database, dead_rows_threshold: int) -> int:
    """One pass: ``VACUUM (ANALYZE)`` every hot table with at least ``dead_rows_threshold`` dead rows.
    Returns how many tables were vacuumed."""
    if database.engine.dialect.name != "postgresql":
        return 0
    vacuumed = 0
    async with database.engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
        rows = await autocommit.execute(
            text(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                "AND relname = ANY(:tables) AND n_dead_tup >= :threshold"
            ),
            {"tables": list(HOT_TABLES), "threshold": dead_rows_threshold},
        )
        for (table,) in rows.all():
            if table in HOT_TABLES:  # a name from the list above, never from input
                await autocommit.execute(text(f'VACUUM (ANALYZE) "{table}"'))
                vacuumed += 1
    return vacuumed
