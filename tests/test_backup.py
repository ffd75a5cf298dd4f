"""``make backup`` / ``make restore`` (scripts/backup.py) on real data: every service's PostgreSQL schema dumped
and restored into an empty database, and an embedded SQLite file copied while a service holds it open,
restored into a fresh ``var/``; the rows, and PostgreSQL's indexes, come back the same."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import stat
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from servicekit.testing import (
    POSTGRES_ADMIN_URL,
    async_url,
    create_database,
    drop_database,
    migrate_embedded,
    migrated_database,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "backup.py"
SERVICES = ("order-api", "wallet-pool", "notifier", "telegram-gateway")
SCHEMAS = tuple(service.replace("-", "_") for service in SERVICES)


def libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def run_script(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *map(str, args)]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def only_backup_in(directory: Path) -> Path:
    """The one backup written there, named by its UTC time."""
    (backup,) = directory.iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z", backup.name)
    return backup


async def postgres_snapshot(url: str) -> dict[str, Any]:
    """Every row of every table in the services' schemas (order-independent), and their index definitions."""
    connection = await asyncpg.connect(libpq(url))
    try:
        tables = await connection.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'",
            list(SCHEMAS),
        )
        snapshot: dict[str, Any] = {}
        for schema, table in tables:
            rows = await connection.fetch(f'SELECT * FROM "{schema}"."{table}"')  # noqa: S608 (catalogue names)
            snapshot[f"{schema}.{table}"] = sorted((tuple(row) for row in rows), key=repr)
        indexes = await connection.fetch(
            "SELECT schemaname, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY($1::text[])",
            list(SCHEMAS),
        )
        # a partial index's predicate comes back equivalent but deparsed differently (casts move): compared up
        # to its WHERE, and that it has one
        snapshot["indexes"] = sorted(
            (schema, name, definition.partition(" WHERE ")[0], " WHERE " in definition)
            for schema, name, definition in indexes
        )
        return snapshot
    finally:
        await connection.close()


async def test_a_postgres_backup_restores_every_service_schema_into_an_empty_database(tmp_path: Path) -> None:
    async with migrated_database(*SERVICES, prefix="desk_backup") as url:
        connection = await asyncpg.connect(libpq(url))
        try:
            await connection.executemany(
                "INSERT INTO wallet_pool.wallet (currency, network, address, status, order_id, created_at) "
                "VALUES ($1, $2, $3, $4, $5, now())",
                [
                    ("BTC", "bitcoin", "bc1qbackup0000000000000000000000000000001", "free", None),
                    ("BTC", "bitcoin", "bc1qbackup0000000000000000000000000000002", "reserved", "order-1"),
                    ("USDT", "tron", "TBackup000000000000000000000000003", "disabled", None),
                ],
            )
        finally:
            await connection.close()
        before = await postgres_snapshot(url)

        await run_script("backup", "--to", tmp_path, "--var-dir", tmp_path / "no-var", "--database-url", url)
        backup = only_backup_in(tmp_path)
        (dump,) = (backup / "postgres").iterdir()  # one pg_dump: one snapshot of all four schemas
        assert dump.read_bytes().startswith(b"PGDMP"), "pg_dump's custom format"

        empty = await create_database("desk_restore")
        try:
            await run_script(
                "restore",
                "--from",
                backup,
                "--var-dir",
                tmp_path / "no-var",
                "--database-url",
                async_url(empty),
            )
            after = await postgres_snapshot(async_url(empty))
        finally:
            await drop_database(empty)

    assert len(before["wallet_pool.wallet"]) == 3
    assert any(rows for table, rows in before.items() if table.endswith(".alembic_version"))
    assert after == before


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(path)) as connection:
        tables = [
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: sorted(connection.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr)  # noqa: S608
            for table in tables
        }


async def test_an_embedded_database_is_copied_online_and_restored_into_a_fresh_var(tmp_path: Path) -> None:
    var, fresh = tmp_path / "var", tmp_path / "fresh-var"
    await migrate_embedded(var, "wallet-pool")
    database = var / "wallet-pool.db"
    with closing(sqlite3.connect(database)) as service:
        service.execute(
            "INSERT INTO wallet (currency, network, address, status, disable_on_release, allocation_count, "
            "created_at) VALUES ('BTC', 'bitcoin', 'bc1qcommitted', 'free', 0, 0, '2026-01-01 00:00:00')"
        )
        service.commit()
        # the service is running: a write of its own is under way while the backup is taken
        service.execute(
            "INSERT INTO wallet (currency, network, address, status, disable_on_release, allocation_count, "
            "created_at) VALUES ('BTC', 'bitcoin', 'bc1quncommitted', 'free', 0, 0, '2026-01-01 00:00:00')"
        )
        await run_script("backup", "--to", tmp_path / "backups", "--var-dir", var)
        service.rollback()
    committed = sqlite_rows(database)

    backup = only_backup_in(tmp_path / "backups")
    copy = backup / "sqlite" / "wallet-pool.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not (backup / "postgres").exists()

    await run_script("restore", "--from", backup, "--var-dir", fresh)
    restored = sqlite_rows(fresh / "wallet-pool.db")
    assert restored == committed
    assert [row[3] for row in restored["wallet"]] == ["bc1qcommitted"]
    assert restored["alembic_version"], "the restored file migrates from where it was"


def test_a_failed_dump_keeps_the_password_to_itself_and_leaves_no_partial_backup(tmp_path: Path) -> None:
    password = "never-printed-8d1f"
    server = urlsplit(POSTGRES_ADMIN_URL)
    missing = urlunsplit(
        server._replace(
            netloc=f"{server.username}:{password}@{server.hostname}:{server.port or 5432}",
            path="/desk_backup_no_such_database",
        )
    )
    command = [sys.executable, str(SCRIPT), "backup", "--to", str(tmp_path), "--database-url", missing]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "pg_dump failed" in result.stderr
    assert "desk_backup_no_such_database" in result.stderr, "pg_dump's own message is shown"
    assert password not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "no partial backup directory"
