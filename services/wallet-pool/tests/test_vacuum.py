"""wallet-pool vacuums its busy tables itself once they hold enough dead rows (the server's autovacuum may be
off), so the FIFO pick does not slow down under churn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from servicekit.app import Runtime
from servicekit.db import Database
from servicekit.maintenance import BusyTableVacuum, BusyTableVacuumMode, vacuum_busy_tables
from servicekit.testing import eventually
from servicekit.workers import PeriodicWorker
from wallet_pool.db import SCHEMA
from wallet_pool.settings import Settings

BUSY = ("wallet", "allocation", "wait_queue_entry", "outbox")


@pytest.fixture
async def no_autovacuum(race_database: Database) -> AsyncIterator[None]:
    """The race database with the server's autovacuum off for ``wallet``: the dead rows these tests count are
    theirs to vacuum, not the server's, even on a server where autovacuum runs."""
    async with race_database.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE wallet SET (autovacuum_enabled = false)"))
    try:
        yield
    finally:
        async with race_database.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE wallet RESET (autovacuum_enabled)"))


async def dead_wallet_rows(database: Database) -> int:
    async with database.engine.connect() as connection:
        dead = await connection.scalar(
            text(
                "SELECT n_dead_tup FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'wallet'"
            )
        )
    return int(dead or 0)


async def add_wallets(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO wallet (currency, network, address, status, allocation_count, created_at) "
                "SELECT 'BTC', 'bitcoin', 'churn-' || g, 'free', 0, now() FROM generate_series(1, 50) g"
            )
        )


async def churn_wallets(database: Database) -> None:
    """30 x 50 releases: 1,500 dead row versions, counted by the server."""
    for _ in range(30):
        async with database.sessionmaker.begin() as session:
            await session.execute(
                text("UPDATE wallet SET released_at = now(), allocation_count = allocation_count + 1")
            )
    await eventually(lambda: dead_wallet_rows(database), until=lambda dead: dead >= 1000, within=15)


@pytest.mark.usefixtures("no_autovacuum")
async def test_a_churned_wallet_table_is_vacuumed_and_a_quiet_one_is_not(race_database: Database) -> None:
    await add_wallets(race_database)
    assert (
        await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) == 0
    )  # nothing to do yet

    await churn_wallets(race_database)

    assert await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) >= 1
    await eventually(lambda: dead_wallet_rows(race_database), until=lambda dead: dead == 0, within=15)


async def wallet_statistics(database: Database) -> dict[str, Any]:
    async with database.engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT n_live_tup, n_dead_tup, n_mod_since_analyze, last_vacuum, last_analyze "
                    "FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'wallet'"
                )
            )
        ).one()
    return dict(row._mapping)


@pytest.mark.usefixtures("no_autovacuum")
async def test_statistics_are_refreshed_only_once_a_table_changed_as_much_as_it_holds(
    race_database: Database,
) -> None:
    async with race_database.engine.connect() as connection:  # statistics of the empty table to start from
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("ANALYZE wallet"))
    await eventually(
        lambda: wallet_statistics(race_database),
        until=lambda s: (s["n_live_tup"], s["n_mod_since_analyze"]) == (0, 0),
        within=15,
    )
    async with race_database.sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO wallet (currency, network, address, status, allocation_count, created_at) "
                "SELECT 'BTC', 'bitcoin', 'stats-' || g, 'free', 0, now() FROM generate_series(1, 3000) g"
            )
        )
    await eventually(
        lambda: wallet_statistics(race_database), until=lambda s: s["n_mod_since_analyze"] >= 3000, within=15
    )
    assert await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) == 1
    analyzed = await eventually(
        lambda: wallet_statistics(race_database),
        until=lambda s: s["last_analyze"] is not None and s["n_mod_since_analyze"] == 0,
        within=15,
    )

    # 1,200 of the 3,000 wallets change: dead rows to remove, but the statistics still describe the table,
    # so they are kept (re-analyzing would make every connection plan its statements again).
    async with race_database.sessionmaker.begin() as session:
        await session.execute(text("UPDATE wallet SET released_at = now() WHERE id <= 1200"))
    await eventually(lambda: dead_wallet_rows(race_database), until=lambda dead: dead >= 1000, within=15)
    assert await vacuum_busy_tables(database=race_database, tables=BUSY, dead_rows_threshold=1000) == 1
    vacuumed = await eventually(
        lambda: wallet_statistics(race_database),
        until=lambda s: s["n_dead_tup"] == 0 and s["last_vacuum"] is not None,
        within=15,
    )
    assert vacuumed["last_analyze"] == analyzed["last_analyze"]
    assert vacuumed["n_mod_since_analyze"] >= 1200


def server_answering(autovacuum: bool) -> tuple[Callable[[Database], Awaitable[bool]], list[bool]]:
    """A stand-in for ``SHOW autovacuum`` answering ``autovacuum``, and the list of answers it gave."""
    answers: list[bool] = []

    async def ask(database: Database) -> bool:
        answers.append(autovacuum)
        return autovacuum

    return ask, answers


@pytest.mark.parametrize(
    ("mode", "server_autovacuum", "vacuums", "asks"),
    [
        ("auto", True, False, True),  # production: the server vacuums, the replicas leave it alone
        ("auto", False, True, True),  # a server with autovacuum off (development, CI, the bench)
        ("on", True, True, False),
        ("off", False, False, False),
    ],
)
@pytest.mark.usefixtures("no_autovacuum")
async def test_the_service_vacuums_only_where_the_server_does_not_unless_told(
    race_database: Database, mode: BusyTableVacuumMode, server_autovacuum: bool, vacuums: bool, asks: bool
) -> None:
    ask, answers = server_answering(server_autovacuum)
    vacuum = BusyTableVacuum(
        database=race_database, tables=BUSY, dead_rows_threshold=1000, mode=mode, ask_server=ask
    )
    await add_wallets(race_database)
    await churn_wallets(race_database)

    assert (await vacuum.run() >= 1) is vacuums
    assert (await dead_wallet_rows(race_database) >= 1000) is not vacuums
    await vacuum.run()
    assert answers == ([server_autovacuum] if asks else []), "asked once, at the first pass"


async def test_auto_asks_the_server_whether_it_vacuums(race_database: Database) -> None:
    async with race_database.engine.connect() as connection:
        setting = await connection.scalar(text("SELECT setting FROM pg_settings WHERE name = 'autovacuum'"))
    vacuum = BusyTableVacuum(database=race_database, tables=BUSY, dead_rows_threshold=1000, mode="auto")
    assert await vacuum.decide() is (setting == "off")


@pytest.mark.parametrize(("mode", "swept"), [("auto", True), ("on", True), ("off", False)])
def test_with_its_vacuum_off_a_service_runs_no_vacuum_sweep_at_all(
    tmp_path: Path, mode: BusyTableVacuumMode, swept: bool
) -> None:
    runtime = Runtime(Settings(var_dir=tmp_path, busy_table_vacuum=mode), schema=SCHEMA)
    runtime.add_busy_tables(*BUSY)
    sweeps = [worker.name for worker in runtime.workers if isinstance(worker, PeriodicWorker)]
    assert ("busy-table-vacuum" in sweeps) is swept
