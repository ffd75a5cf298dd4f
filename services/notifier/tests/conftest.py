"""Fixtures of notifier's tests.

- a real SMTP server (aiosmtpd on a free loopback port) that records messages, refuses chosen recipients
  with 550 and can be stopped and started again;
- a PostgreSQL database migrated once per session, emptied before each test that uses it (the delivery
  worker commits for real, from its own sessions);
- the app in-process with API keys for a reader and an admin.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from notifier.db import SCHEMA
from notifier.main import create_app
from notifier.testing import RunningApp, SmtpServer, make_settings, running_smtp_server
from servicekit.db import Database
from servicekit.testing import migrated_database, running_app


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("notifier", prefix="notifier_test") as url:
        yield url


async def _empty(database: Database) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(
            text("TRUNCATE delivery_attempt, notification, alert, inbox, webhook_endpoint RESTART IDENTITY")
        )


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The test database, empty, for code that commits for real."""
    db = Database(
        url=database_url, schema=SCHEMA, var_dir=Path(tempfile.gettempdir()), service_name="notifier"
    )
    await _empty(db)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def notifier_app(
    database: Database, database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> AsyncIterator[RunningApp]:
    """The app with its delivery worker, sending through the test SMTP server."""
    settings = make_settings(database_url, tmp_path, email_providers=["smtp"], smtp_port=smtp_server.port)
    app = create_app(settings)
    async with running_app(app) as client:
        yield RunningApp(app, client)
