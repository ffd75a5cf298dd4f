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

**One migration at a time.** On PostgreSQL a run first takes a session-level advisory lock keyed by the schema
(:func:`migration_lock_key`), waiting at most ``migration_lock_wait_seconds``: replicas started together (each
pod's init container runs its image's migrations) migrate one after the other, and the later ones find the
schema at head and change nothing. Its statements then run with ``lock_timeout`` and ``statement_timeout``
(``migration_lock_timeout_seconds``, ``migration_statement_timeout_seconds``): a migration that cannot take a
table's lock soon fails, to be retried, rather than queue every query of the running services behind it.
SQLite needs none of this (one file, one writer). An upgrade that finds the schema at a revision its history
does not know (a newer release's: a rollback) changes nothing and succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command, context, op
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import MetaData, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from servicekit.db import (
    ROW_PRIVILEGES,
    RUNTIME_OWNS,
    RUNTIME_PRIVILEGES,
    create_engine,
    resolve_database_url,
)
from servicekit.settings import ServiceSettings, refuse_production_guesses

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class MigrationTimeouts:
    """How long a migration waits on PostgreSQL (see the module's docstring); 0 means no limit."""

    lock_wait_seconds: float = 600.0
    lock_timeout_seconds: float = 10.0
    statement_timeout_seconds: float = 600.0

    @classmethod
    def of(cls, settings: ServiceSettings) -> MigrationTimeouts:
        return cls(
            lock_wait_seconds=settings.migration_lock_wait_seconds,
            lock_timeout_seconds=settings.migration_lock_timeout_seconds,
            statement_timeout_seconds=settings.migration_statement_timeout_seconds,
        )


class MigrationLockTimeoutError(CommandError):
    """Another migration of the same schema held its lock for longer than this one would wait (the
    ``alembic`` command prints it as one line, and exits 1)."""


LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock not taken within ``lock_timeout``."""


def migration_lock_key(schema: str) -> int:
    """The advisory lock (a signed 64-bit key) that migrations of ``schema`` take, the same in every process."""
    digest = hashlib.sha256(f"servicekit.migrations:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _set_timeout(connection: Connection, name: str, seconds: float) -> None:
    connection.execute(
        text("SELECT set_config(:name, :value, false)"), {"name": name, "value": f"{round(seconds * 1000)}ms"}
    )


def _take_migration_lock(connection: Connection, *, schema: str, timeouts: MigrationTimeouts) -> None:
    """Wait (at most ``lock_wait_seconds``) for any other migration of ``schema`` to finish, then hold its lock
    for this connection's session and set the timeouts of the migration's statements."""
    _set_timeout(connection, "statement_timeout", 0)
    _set_timeout(connection, "lock_timeout", timeouts.lock_wait_seconds)
    try:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": migration_lock_key(schema)})
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        connection.rollback()
        raise MigrationLockTimeoutError(
            f"another migration of schema {schema!r} still runs after {timeouts.lock_wait_seconds:g} s"
        ) from exc
    _set_timeout(connection, "lock_timeout", timeouts.lock_timeout_seconds)
    _set_timeout(connection, "statement_timeout", timeouts.statement_timeout_seconds)
    connection.commit()


def _release_migration_lock(connection: Connection, *, schema: str) -> None:
    if connection.in_transaction():
        connection.rollback()
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": migration_lock_key(schema)})
    connection.execute(text("RESET lock_timeout"))
    connection.execute(text("RESET statement_timeout"))
    connection.commit()


def _run(
    connection: Connection,
    *,
    metadata: MetaData,
    schema: str,
    runtime_role: str | None = None,
    timeouts: MigrationTimeouts | None = None,
) -> None:
    if connection.dialect.name != "postgresql":
        _migrate(connection, metadata=metadata, schema=schema, runtime_role=runtime_role)
        return
    _take_migration_lock(connection, schema=schema, timeouts=timeouts or MigrationTimeouts())
    try:
        _migrate(connection, metadata=metadata, schema=schema, runtime_role=runtime_role)
    except BaseException:
        with contextlib.suppress(SQLAlchemyError):  # a lost connection has released the lock already
            _release_migration_lock(connection, schema=schema)
        raise
    _release_migration_lock(connection, schema=schema)


def _migrate(connection: Connection, *, metadata: MetaData, schema: str, runtime_role: str | None) -> None:
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
    if _newer_release_migrated():
        return
    with context.begin_transaction():
        context.run_migrations()
        if postgres and runtime_role:
            grant_runtime_role(connection, metadata=metadata, schema=schema, role=runtime_role)


def _newer_release_migrated() -> bool:
    """Whether an upgrade to head finds the database at a revision this history does not know: a newer release
    migrated it, and this one is rolled back to (or still rolling out beside it). There is nothing to do, as
    ``/health/ready`` agrees (``ahead``): an older pod's migration gate lets it start."""
    try:
        destination = context.get_revision_argument()  # "head" comes resolved to the head's id
    except KeyError:  # a command that goes nowhere (alembic check, current)
        return False
    destinations = {destination} if isinstance(destination, str) else set(destination or ())
    if destinations != set(context.script.get_heads()):
        return False
    current = set(context.get_context().get_current_heads())
    known = {script.revision for script in context.script.walk_revisions()}
    unknown = current - known
    if unknown:
        logger.warning(
            "the schema is at %s, newer than this release's migrations: nothing to migrate",
            ", ".join(unknown),
        )
    return bool(unknown)


def run_env(
    *,
    metadata: MetaData,
    schema: str,
    url: str,
    runtime_role: str | None = None,
    timeouts: MigrationTimeouts | None = None,
    statement_cache_size: int = 100,
) -> None:
    """Run the migrations of one service against ``url`` (call from ``env.py``); with ``runtime_role``, grant
    that role its privileges afterwards; on PostgreSQL one run at a time per schema, within ``timeouts`` (see
    the module's docstring). ``statement_cache_size``: the service's ``DATABASE_STATEMENT_CACHE_SIZE``."""
    url = context.config.attributes.get("url", url)
    runtime_role = context.config.attributes.get("runtime_role", runtime_role)

    async def run_async() -> None:
        engine = create_engine(url, schema=schema, pool_size=1, statement_cache_size=statement_cache_size)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(
                    lambda sync: _run(
                        sync, metadata=metadata, schema=schema, runtime_role=runtime_role, timeouts=timeouts
                    )
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
        _run(existing, metadata=metadata, schema=schema, runtime_role=runtime_role, timeouts=timeouts)
        return
    asyncio.run(run_async())


def database_url(settings: ServiceSettings) -> str:
    """The database a service's migrations run on: its ``DATABASE_SESSION_URL`` if set with a ``DATABASE_URL``
    (the advisory lock is a session's, which a transaction-mode pooler such as PgBouncer would not keep), else
    its ``DATABASE_URL``, or (outside production only) its embedded SQLite file. In production a missing URL
    stops the migration rather than migrate a file of the job's own and report success."""
    refuse_production_guesses(settings, database_only=True)
    return resolve_database_url(
        (settings.database_url and settings.database_session_url) or settings.database_url,
        var_dir=settings.var_dir,
        service_name=settings.service_name,
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
