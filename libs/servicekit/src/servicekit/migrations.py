"""The body of every service's ``migrations/env.py``.

Each service keeps one Alembic history that touches only its own schema: on PostgreSQL the schema is created
if missing, the connection's ``search_path`` is the schema, and the version table lives in it
(``version_table_schema``); objects of any other schema are ignored by autogenerate and ``alembic check``.
On the embedded SQLite default the same history runs in batch mode.

The URL comes from ``config.attributes["url"]`` (tests, programmatic runs) or the service's settings.

**Two roles on PostgreSQL.** The role that runs the migrations owns the schema and its tables; the service
may run as another role (its *runtime role*), which then gets exactly what each table declares in
``Table.info[RUNTIME_PRIVILEGES]`` (by default reading and writing rows; the audit log only ``SELECT`` and
``INSERT``), never ownership, so it cannot alter a table or disable its triggers. Those grants are not part
of a revision: the role's name is deployment configuration, so every migration run (``alembic upgrade head``,
at head too) grants them afresh, for the tables of the metadata and ``alembic_version`` (read only).
The one exception is :data:`RUNTIME_OWNS`: PostgreSQL 15 lets only a table's owner ``VACUUM`` it, so a table
the service vacuums itself (its outbox: ``servicekit.maintenance``) is handed to the runtime role; the
migration role must then be a member of the runtime role (``GRANT <runtime> TO <migration>``) to hand it over
and to change it later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import Connection

from servicekit.db import (
    ROW_PRIVILEGES,
    RUNTIME_OWNS,
    RUNTIME_PRIVILEGES,
    create_engine,
    resolve_database_url,
)
from servicekit.settings import ServiceSettings, refuse_production_guesses


def _include_object(schema: str) -> Any:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and name == "alembic_version":
            return False
        object_schema = getattr(obj, "schema", None)
        return object_schema in (None, schema)

    return include


_KNOWN_PRIVILEGES = frozenset(ROW_PRIVILEGES)


class RuntimeRoleError(RuntimeError):
    """The runtime role cannot be granted its privileges as configured."""


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def runtime_privileges(table: Table) -> tuple[str, ...] | str:
    """What the runtime role may do on ``table`` (see :data:`RUNTIME_PRIVILEGES`)."""
    declared = table.info.get(RUNTIME_PRIVILEGES, ROW_PRIVILEGES)
    if declared == RUNTIME_OWNS:
        return RUNTIME_OWNS
    privileges = tuple(declared)
    unknown = set(privileges) - _KNOWN_PRIVILEGES
    if unknown:
        raise RuntimeRoleError(f"table {table.name}: unknown runtime privileges {sorted(unknown)}")
    return privileges


def grant_runtime_role(connection: Connection, *, metadata: MetaData, schema: str, role: str) -> None:
    """Give ``role`` (the service's runtime role) what each table of ``metadata`` that exists in ``schema``
    declares and nothing more; run as the role that owns ``schema``, in the migration's transaction
    (PostgreSQL only)."""
    if connection.execute(text("SELECT current_user")).scalar_one() == role:
        raise RuntimeRoleError(
            f"the runtime role {role!r} is the role running the migrations: the service would own its tables"
        )
    quoted_schema, quoted_role = _quoted(schema), _quoted(role)
    connection.execute(text(f"GRANT USAGE ON SCHEMA {quoted_schema} TO {quoted_role}"))
    existing = set(
        connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"), {"schema": schema}
        )
        .scalars()
        .all()
    )
    for table in metadata.sorted_tables:
        if table.name not in existing:  # after a downgrade, or in a revision older than the code
            continue
        name = f"{quoted_schema}.{_quoted(table.name)}"
        privileges = runtime_privileges(table)
        if privileges == RUNTIME_OWNS:
            _hand_over(connection, table=name, schema=quoted_schema, role=quoted_role)
            continue
        connection.execute(text(f"REVOKE ALL ON {name} FROM {quoted_role}"))
        if privileges:
            connection.execute(text(f"GRANT {', '.join(privileges)} ON {name} TO {quoted_role}"))
    connection.execute(text(f"GRANT SELECT ON {quoted_schema}.alembic_version TO {quoted_role}"))
    connection.execute(
        text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {quoted_schema} TO {quoted_role}")
    )


def _hand_over(connection: Connection, *, table: str, schema: str, role: str) -> None:
    """Make ``role`` the owner of ``table``. PostgreSQL wants the new owner to hold ``CREATE`` on the schema at
    that moment; it holds it only for the moment (same transaction), so it can create nothing there."""
    owner = connection.execute(
        text("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": table},
    ).scalar_one()
    if _quoted(owner) == role:
        return
    connection.execute(text(f"GRANT CREATE ON SCHEMA {schema} TO {role}"))
    connection.execute(text(f"ALTER TABLE {table} OWNER TO {role}"))
    connection.execute(text(f"REVOKE CREATE ON SCHEMA {schema} FROM {role}"))


def _run(connection: Connection, *, metadata: MetaData, schema: str, runtime_role: str | None = None) -> None:
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
        if postgres and runtime_role:
            grant_runtime_role(connection, metadata=metadata, schema=schema, role=runtime_role)


def run_env(*, metadata: MetaData, schema: str, url: str, runtime_role: str | None = None) -> None:
    """Run the migrations of one service against ``url`` (call from ``env.py``); with ``runtime_role``, grant
    that role its privileges afterwards (see the module's docstring)."""
    url = context.config.attributes.get("url", url)
    runtime_role = context.config.attributes.get("runtime_role", runtime_role)

    async def run_async() -> None:
        engine = create_engine(url, schema=schema, pool_size=1)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(
                    lambda sync: _run(sync, metadata=metadata, schema=schema, runtime_role=runtime_role)
                )
        finally:
            await engine.dispose()

    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table_schema=schema, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    existing = context.config.attributes.get("connection")
    if existing is not None:
        _run(existing, metadata=metadata, schema=schema, runtime_role=runtime_role)
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


def alembic_config(service_dir: Path, *, url: str | None = None, runtime_role: str | None = None) -> Config:
    """The Alembic config of a service, optionally pointed at ``url`` and granting ``runtime_role``."""
    config = Config(str(service_dir / "alembic.ini"))
    config.set_main_option("script_location", str(service_dir / "migrations"))
    if url is not None:
        config.attributes["url"] = url
    if runtime_role is not None:
        config.attributes["runtime_role"] = runtime_role
    return config


def upgrade(
    service_dir: Path, *, url: str | None = None, revision: str = "head", runtime_role: str | None = None
) -> None:
    command.upgrade(alembic_config(service_dir, url=url, runtime_role=runtime_role), revision)


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


OUTBOX_DEAD = text("dead_at IS NOT NULL")
"""The condition of ``ix_outbox_dead``: dead-lettered events."""


def create_outbox_dead_index() -> None:
    """``ix_outbox_dead``: the dead-lettered events, newest first (listed, replayed, counted and reported)."""
    op.create_index(
        "ix_outbox_dead",
        "outbox",
        ["created_at", "id"],
        unique=False,
        postgresql_where=OUTBOX_DEAD,
        sqlite_where=OUTBOX_DEAD,
    )


def drop_outbox_dead_index() -> None:
    op.drop_index(
        "ix_outbox_dead", table_name="outbox", postgresql_where=OUTBOX_DEAD, sqlite_where=OUTBOX_DEAD
    )
