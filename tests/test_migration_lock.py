"""Migrations on PostgreSQL run one at a time per schema (an advisory lock), so that every pod's init container
may run its image's migrations as it starts: replicas racing to migrate one empty database all succeed and the
schema reaches head once. A migration gives up, rather than wait without end, on another migration that holds
the lock too long, and on a table lock that the running services hold (``lock_timeout``).

The racing migrations are real ``alembic upgrade head`` processes, as the init containers run them."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest
from alembic import command
from sqlalchemy.exc import DBAPIError

from servicekit.migrations import MigrationLockTimeoutError, alembic_config, migration_lock_key
from servicekit.revisions import MigrationHistory, migrations_dir
from servicekit.testing import (
    async_url,
    create_database,
    drop_database,
    eventually,
    free_port,
    migrated_database,
    service_dir,
)
from wallet_pool.db import SCHEMA

ALEMBIC = os.path.join(os.path.dirname(sys.executable), "alembic")
HEAD = MigrationHistory.read(migrations_dir("wallet_pool")).head


@dataclass(frozen=True)
class Migration:
    returncode: int
    output: str


async def start_migration(url: str, **settings: str) -> asyncio.subprocess.Process:
    """``alembic upgrade head`` of wallet-pool against ``url``, configured as its init container is."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("WALLET_POOL_")}
    env["WALLET_POOL_DATABASE_URL"] = url
    env.update({f"WALLET_POOL_{name.upper()}": value for name, value in settings.items()})
    return await asyncio.create_subprocess_exec(
        ALEMBIC,
        "upgrade",
        "head",
        cwd=service_dir("wallet-pool"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def finished(process: asyncio.subprocess.Process, *, within: float = 90) -> Migration:
    output, _ = await asyncio.wait_for(process.communicate(), timeout=within)
    assert process.returncode is not None
    return Migration(process.returncode, output.decode())


@asynccontextmanager
async def empty_database() -> AsyncIterator[tuple[str, asyncpg.Connection]]:
    """A database nothing was migrated on, and a connection to it (as the superuser)."""
    name = await create_database("desk_migration_lock")
    url = async_url(name)
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        yield url, connection
    finally:
        await connection.close()
        await drop_database(name)


async def waiting_for_the_lock(connection: asyncpg.Connection) -> int:
    """How many sessions of this database wait for an advisory lock."""
    count = await connection.fetchval(
        "SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid) "
        "WHERE locktype = 'advisory' AND NOT granted AND datname = current_database()"
    )
    return int(count)


async def test_migrations_started_together_on_an_empty_database_all_succeed_and_reach_head_once() -> None:
    async with empty_database() as (url, connection):
        # A migration is under way (this session holds its lock): the ones started now must wait for it, so
        # that they all reach the lock at the same time, as replicas rolled out together do.
        await connection.execute("SELECT pg_advisory_lock($1)", migration_lock_key(SCHEMA))
        processes = [await start_migration(url) for _ in range(2)]
        await eventually(
            lambda: waiting_for_the_lock(connection), until=lambda waiting: waiting == 2, within=60
        )
        await connection.execute("SELECT pg_advisory_unlock($1)", migration_lock_key(SCHEMA))

        migrations = await asyncio.gather(*(finished(process) for process in processes))
        for migration in migrations:
            assert migration.returncode == 0, migration.output
            assert "Error" not in migration.output, migration.output
        ran = [m for m in migrations if f"-> {HEAD}" in m.output]
        assert len(ran) == 1, "one ran the history, the others found the schema at head"
        versions = await connection.fetch("SELECT version_num FROM wallet_pool.alembic_version")
        assert [row["version_num"] for row in versions] == [HEAD]


def migrate_in_process(url: str) -> None:
    """``alembic upgrade head`` of wallet-pool in this process, with its settings from the environment."""
    config = alembic_config(service_dir("wallet-pool"), url=url)
    config.attributes["quiet"] = True  # keep the test's logging as it is
    command.upgrade(config, "head")


async def test_a_migration_gives_up_on_another_that_holds_the_lock_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_POOL_MIGRATION_LOCK_WAIT_SECONDS", "1")
    async with empty_database() as (url, connection):
        await connection.execute("SELECT pg_advisory_lock($1)", migration_lock_key(SCHEMA))
        with pytest.raises(
            MigrationLockTimeoutError, match=f"another migration of schema '{SCHEMA}' still runs"
        ):
            await asyncio.wait_for(asyncio.to_thread(migrate_in_process, url), timeout=30)
        tables = await connection.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", SCHEMA
        )
        assert tables == 0, "it changed nothing"


async def test_a_migration_blocked_by_a_table_lock_fails_after_lock_timeout_instead_of_queueing_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WALLET_POOL_MIGRATION_LOCK_TIMEOUT_SECONDS", "1")
    async with migrated_database("wallet-pool", prefix="desk_migration_lock") as url:
        config = alembic_config(service_dir("wallet-pool"), url=url)
        config.attributes["quiet"] = True
        await asyncio.to_thread(command.downgrade, config, "-1")  # one release back, whatever the head does
        admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            previous = await admin.fetchval("SELECT version_num FROM wallet_pool.alembic_version")
            tables = await admin.fetchval(
                "SELECT string_agg(format('%I.%I', schemaname, tablename), ', ') FROM pg_tables "
                "WHERE schemaname = $1 AND tablename <> 'alembic_version'",
                SCHEMA,
            )
            async with admin.transaction():  # a service's write transaction on every table, still open
                # the head revision changes some table, whose lock conflicts with a writer's
                await admin.execute(f"LOCK TABLE {tables} IN ROW EXCLUSIVE MODE")
                with pytest.raises(DBAPIError, match="lock timeout"):
                    await asyncio.wait_for(asyncio.to_thread(migrate_in_process, url), timeout=30)
            version = await admin.fetchval("SELECT version_num FROM wallet_pool.alembic_version")
        finally:
            await admin.close()
    assert previous != HEAD
    assert version == previous, "the failed revision rolled back"


async def test_an_older_release_finds_the_schema_migrated_by_a_newer_one_and_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A rollback: the previous image's migration gate meets a revision it does not know, changes nothing and
    lets the pod start (its readiness answers ``ahead``, ready)."""
    async with migrated_database("wallet-pool", prefix="desk_migration_lock") as url:
        admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await admin.execute("UPDATE wallet_pool.alembic_version SET version_num = '9999_a_newer_release'")
            with caplog.at_level(logging.WARNING, logger="servicekit.migrations"):
                await asyncio.to_thread(migrate_in_process, url)
            versions = await admin.fetch("SELECT version_num FROM wallet_pool.alembic_version")
        finally:
            await admin.close()
    assert "newer than this release's migrations: nothing to migrate" in caplog.text
    assert [row["version_num"] for row in versions] == ["9999_a_newer_release"]


async def test_behind_a_transaction_pooler_migrations_run_on_the_session_url() -> None:
    """Their advisory lock is a session's, which PgBouncer in transaction mode would not keep: with
    DATABASE_SESSION_URL set they run there (here DATABASE_URL, the "pooler", answers nothing at all)."""
    pooler = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/desk"
    async with empty_database() as (url, connection):
        process = await start_migration(pooler, database_session_url=url, database_statement_cache_size="0")
        migration = await finished(process)
        assert migration.returncode == 0, migration.output
        versions = await connection.fetch("SELECT version_num FROM wallet_pool.alembic_version")
    assert [row["version_num"] for row in versions] == [HEAD]
