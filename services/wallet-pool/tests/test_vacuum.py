"""wallet-pool vacuums its busy tables itself once they hold enough dead rows (the server's autovacuum may be
off), so the FIFO pick does not slow down under churn."""

from __future__ import annotations

from sqlalchemy import text

from servicekit.db import Database
from servicekit.maintenance import vacuum_busy_tables
from servicekit.testing import eventually

BUSY = ("wallet", "allocation", "wait_queue_entry", "outbox")


async def dead_wallet_rows(database: Database) -> int:
    async with database.engine.connect() as connection:
        dead = await connection.scalar(
            text(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'wallet'"
            )
        )
    return int(dead or 0)


async def test_a_churned_wallet_table_is_vacuumed_and_a_quiet_one_is_not(race_database: Database) -> None:
    async with race_database.sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO wallet (currency, network, address, status, allocation_count, created_at) "
                "SELECT 'BTC', 'bitcoin', 'churn-' || g, 'free', 0, now() FROM generate_series(1, 50) g"
            )
        )
    assert (
        await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) == 0
    )  # nothing to do yet

    for _ in range(30):  # 30 x 50 releases: 1,500 dead row versions
        async with race_database.sessionmaker.begin() as session:
            await session.execute(
                text("UPDATE wallet SET released_at = now(), allocation_count = allocation_count + 1")
            )
    await eventually(lambda: dead_wallet_rows(race_database), until=lambda dead: dead >= 1000, within=15)

    assert await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) >= 1
    await eventually(lambda: dead_wallet_rows(race_database), until=lambda dead: dead == 0, within=15)
