"""Fixtures of wallet-pool's tests.

- behaviour tests talk to the app in-process (``running_app``) on a PostgreSQL database migrated once per test
  session; each test runs in an outer transaction that is rolled back (``isolated_session`` + ``use_session``),
  so the app's own commits are savepoints and nothing leaks between tests;
- concurrency tests commit for real in a database of their own (``race_database``), emptied between tests;
- :func:`assert_pool_invariants` checks, in SQL, what must hold after any interleaving of requests.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.app import request_session
from servicekit.db import Database
from servicekit.state import service_state
from servicekit.testing import isolated_session, migrated_database, running_app, use_session
from wallet_pool.db import SCHEMA
from wallet_pool.main import create_app
from wallet_pool.testing import KEYS, PoolApi, RunningApp, make_settings

# -- behaviour tests: one migrated database, one rolled-back transaction per test -----------------------------


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("wallet-pool", prefix="wallet_pool_test") as url:
        yield url


@pytest.fixture(scope="session")
async def pool_app(database_url: str) -> AsyncIterator[RunningApp]:
    settings = make_settings(database_url, reuse_cooldown_seconds={"ETH": 600})
    app = create_app(settings)
    async with running_app(app) as client:
        yield RunningApp(app, client, settings)


@pytest.fixture
async def session(pool_app: RunningApp) -> AsyncIterator[AsyncSession]:
    """The test's session, shared by every request it makes; everything is rolled back afterwards."""
    async with isolated_session(service_state(pool_app.app).runtime.database.engine) as session:
        use_session(pool_app.app, session)
        try:
            yield session
        finally:
            pool_app.app.dependency_overrides.pop(request_session, None)


@pytest.fixture
def api(pool_app: RunningApp, session: AsyncSession) -> PoolApi:
    return PoolApi(pool_app.client, app=pool_app.app)


@pytest.fixture
def reader_api(pool_app: RunningApp, session: AsyncSession) -> PoolApi:
    return PoolApi(pool_app.client, app=pool_app.app, key=KEYS.reader)


# -- concurrency tests: a database of their own, real commits ------------------------------------------------


@pytest.fixture(scope="session")
async def race_database_url() -> AsyncIterator[str]:
    async with migrated_database("wallet-pool", prefix="wallet_pool_race") as url:
        yield url


@pytest.fixture
async def race_database(race_database_url: str) -> AsyncIterator[Database]:
    """The race database, empty, with a connection pool big enough for many concurrent transactions (and a
    patient one)."""
    database = Database(
        url=race_database_url,
        schema=SCHEMA,
        var_dir=Path(tempfile.gettempdir()),
        service_name="wallet-pool",
        pool_size=15,
        # the races queue many transactions for 15 connections: on a loaded machine a wait can pass the
        # services' 5 s, and what is tested is what the transactions leave behind, not how long they queue
        pool_timeout_seconds=60.0,
    )
    async with database.engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE wallet, allocation, wait_queue_entry, outbox, pool_level RESTART IDENTITY")
        )
    try:
        yield database
    finally:
        await database.dispose()
