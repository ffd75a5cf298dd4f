"""``/health/ready`` reports the database's schema revision against the code's head, and a database behind
the code makes the service unready: on PostgreSQL (its schema's ``alembic_version``) and on the embedded
SQLite default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from servicekit.db import create_engine, resolve_database_url
from servicekit.migrations import alembic_config, upgrade
from servicekit.revisions import MigrationHistory, migrations_dir
from servicekit.testing import migrated_database, running_app, service_dir
from wallet_pool.db import SCHEMA
from wallet_pool.main import create_app
from wallet_pool.settings import Settings

SERVICES = {
    "order-api": "order_api",
    "wallet-pool": "wallet_pool",
    "notifier": "notifier",
    "telegram-gateway": "telegram_gateway",
}


@pytest.mark.parametrize("service", SERVICES, ids=list(SERVICES))
def test_the_code_head_is_alembics_head(service: str) -> None:
    """Read without importing the scripts, the history agrees with Alembic's own reading of it."""
    directory = migrations_dir(SERVICES[service])
    assert directory == service_dir(service) / "migrations"
    scripts = ScriptDirectory.from_config(alembic_config(service_dir(service)))
    history = MigrationHistory.read(directory)
    assert history.heads == set(scripts.get_heads())
    assert history.revisions == {script.revision for script in scripts.walk_revisions()}


@asynccontextmanager
async def database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """wallet-pool's database migrated to head, on PostgreSQL or on the embedded SQLite file."""
    if kind == "postgresql":
        async with migrated_database("wallet-pool") as url:
            yield url
        return
    url = resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool")
    await asyncio.to_thread(upgrade, service_dir("wallet-pool"), url=url)
    yield url


async def readiness(url: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    settings = Settings(
        database_url=None if url.startswith("sqlite") else url, var_dir=tmp_path, log_level="WARNING"
    )
    async with running_app(create_app(settings)) as client:
        response = await client.get("/health/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def set_revision(url: str, revision: str) -> None:
    engine = create_engine(url, schema=SCHEMA, pool_size=1)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_ready_names_the_schema_revision_and_is_503_while_the_database_is_behind(
    kind: str, tmp_path: Path
) -> None:
    head = MigrationHistory.read(migrations_dir("wallet_pool")).head
    async with database(kind, tmp_path) as url:
        status, body = await readiness(url, tmp_path)
        assert status == 200, body
        assert body["schema"] == {"revision": head, "head": head, "status": "ok"}

        config = alembic_config(service_dir("wallet-pool"), url=url)
        await asyncio.to_thread(command.downgrade, config, "-1")
        previous = ScriptDirectory.from_config(config).get_revision(head).down_revision
        assert isinstance(previous, str)
        status, body = await readiness(url, tmp_path)
        assert status == 503
        assert body["status"] == "not_ready"
        assert body["schema"] == {"revision": previous, "head": head, "status": "behind"}
        assert body["checks"]["database"]["status"] == "ok"  # reachable, but not at the code's revision

        # A newer release migrated it (a rolling update): this one keeps serving.
        await asyncio.to_thread(command.upgrade, config, "head")
        await set_revision(url, "9999_a_newer_release")
        status, body = await readiness(url, tmp_path)
        assert status == 200, body
        assert body["schema"] == {"revision": "9999_a_newer_release", "head": head, "status": "ahead"}


async def test_a_database_never_migrated_is_behind(tmp_path: Path) -> None:
    head = MigrationHistory.read(migrations_dir("wallet_pool")).head
    status, body = await readiness(
        resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool"), tmp_path
    )
    assert status == 503
    assert body["schema"] == {"revision": None, "head": head, "status": "behind"}
