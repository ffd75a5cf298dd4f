"""The body of every service's ``migrations/env.py``.

Each service keeps one Alembic history that touches only its own schema: on PostgreSQL the schema is created
if missing, the connection's ``search_path`` is the schema, and the version table lives in it
(``version_table_schema``); objects of any other schema are ignored by autogenerate and ``alembic check``.
On the embedded SQLite default the same history runs in batch mode.

The URL comes from ``config.attributes["url"]`` (tests, programmatic runs) or the service's settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection

from servicekit.db import create_engine, resolve_database_url
from servicekit.settings import ServiceSettings, refuse_production_guesses


def _include_object(schema: str) -> Any:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name == "alembic_version":
            return False
        object_schema = getattr(obj, "schema", None)
        return object_schema in (None, schema)

    return include


def _run(connection: Connection, *, metadata: MetaData, schema: str) -> None:
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        connection.execute(text(f'SET search_path TO "{schema}"'))
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema if postgres else None,
        include_schemas=False,
        include_object=_include_object(schema),
        render_as_batch=not postgres,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_env(*, metadata: MetaData, schema: str, url: str) -> None:
    """Run the migrations of one service against ``url`` (call from ``env.py``)."""
    url = context.config.attributes.get("url", url)

    async def run_async() -> None:
        engine = create_engine(url, schema=schema, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(lambda sync: _run(sync, metadata=metadata, schema=schema))
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    existing = context.config.attributes.get("connection")
    if existing is not None:
        _run(existing, metadata=metadata, schema=schema)
        return
    asyncio.run(run_async())


def database_url(settings: ServiceSettings) -> str:
    """The database a service's migrations run on: its ``DATABASE_URL``, or (outside production only) its
    embedded SQLite file. In production a missing URL stops the migration rather than migrate a file of the
    job's own and report success."""
    refuse_production_guesses(settings, database_only=True)
    return resolve_database_url(
        settings.database_url, var_dir=settings.var_dir, service_name=settings.service_name
    )


def alembic_config(service_dir: Path, *, url: str | None = None) -> Config:
    """The Alembic config of a service, optionally pointed at ``url``."""
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    if url is not None:
        config.attributes["url"] = url
    return config


def upgrade(service_dir: Path, *, url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(service_dir, url=url), revision)


# -- helpers for the services' migrations (the same step in every service's history) ----------------------

OUTBOX_PENDING = text("delivered_at IS NULL AND dead_at IS NULL")
"""The condition of ``ix_outbox_pending``: events not yet delivered nor dead-lettered."""

OUTBOX_AUTOVACUUM = {
    "autovacuum_vacuum_scale_factor": "0",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_cost_delay": "0",
    "autovacuum_vacuum_insert_scale_factor": "0",
    "autovacuum_vacuum_insert_threshold": "1000",
    "autovacuum_analyze_scale_factor": "0",
    "autovacuum_analyze_threshold": "1000",
}
"""Autovacuum and analyze after a fixed number of changed rows, unthrottled: for tables rewritten all the time
(every outbox event is an insert and two updates). Migrations refer to it: change it only in a new constant."""


def set_autovacuum(tables: Iterable[str], options: Mapping[str, str]) -> None:
    """Per-table autovacuum ``options`` (PostgreSQL only; SQLite has no autovacuum), from a migration."""
    if op.get_bind().dialect.name != "postgresql":
        return
    settings = ", ".join(f"{name} = {value}" for name, value in options.items())
    for table in tables:
        op.execute(f"ALTER TABLE {table} SET ({settings})")


def reset_autovacuum(tables: Iterable[str], options: Mapping[str, str]) -> None:
    """Undo :func:`set_autovacuum`."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in tables:
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(options)})")


def rebuild_outbox_pending_index(columns: list[str]) -> None:
    """``ix_outbox_pending`` (the relay's way to its pending events) rebuilt over ``columns``."""
    op.drop_index(
        "ix_outbox_pending", table_name="outbox", postgresql_where=OUTBOX_PENDING, sqlite_where=OUTBOX_PENDING
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        columns,
        unique=False,
        postgresql_where=OUTBOX_PENDING,
        sqlite_where=OUTBOX_PENDING,
    )
