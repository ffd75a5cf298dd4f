"""Database access: the async engine, the request-scoped session, and column types shared by services.

Each service owns one PostgreSQL schema. Its tables are declared without a schema and every connection's
``search_path`` is set to the service's schema, so the same models and migrations also run unchanged on the
embedded default: a SQLite file under ``var/`` when no ``DATABASE_URL`` is set.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import asyncpg
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    FunctionElement,
    MetaData,
    String,
    Table,
    TextClause,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult, Dialect, ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import Numeric, TypeDecorator
from sqlalchemy.util import greenlet_spawn

from servicekit.private_files import private_directory, private_sqlite_database
from servicekit.telemetry import statement_span

if TYPE_CHECKING:
    from servicekit.settings import ServiceSettings

log = logging.getLogger("servicekit.db")

LOST_CONNECTION = "the database connection was lost (closed by the server)"
REFUSED_STATEMENT_ATTEMPTS = 4
"""Connections a driver statement tries when asyncpg refuses to start it on one (a terminated connection
not yet seen closed); past that the statement fails as a lost connection (``503``)."""

TRACE_STATEMENTS = "trace_statements"
"""``session.info`` key: whether statements sent on the driver directly get a span each (``trace_database``)."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


RUNTIME_PRIVILEGES = "runtime_privileges"
"""``Table.info`` key: the privileges a service's runtime role gets on the table (a tuple of ``SELECT``,
``INSERT``, ``UPDATE``, ``DELETE``; empty for none), or :data:`RUNTIME_OWNS` (``servicekit.migrations``)."""
RUNTIME_OWNS = "OWNER"
"""``Table.info[RUNTIME_PRIVILEGES]``: the runtime role owns the table (only for tables it vacuums itself)."""
ROW_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
"""What the runtime role gets on a table that declares nothing."""


def new_metadata() -> MetaData:
    """Metadata with the house naming convention, so migrations name constraints predictably."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def resolve_database_url(url: str | None, *, var_dir: Path, service_name: str) -> str:
    """The URL to connect to: the configured one (normalised to asyncpg) or the embedded SQLite file."""
    if not url:
        private_directory(var_dir)
        return f"sqlite+aiosqlite:///{var_dir / (service_name + '.db')}"
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    schema: str,
    pool_size: int = 10,
    pool_timeout_seconds: float = 5.0,
    statement_cache_size: int = 100,
) -> AsyncEngine:
    """An engine whose connections live in ``schema`` on PostgreSQL, or a tuned SQLite engine. A checkout
    waits up to ``pool_timeout_seconds`` for a free connection (then ``sqlalchemy.exc.TimeoutError``, a
    ``503``), and never hands out a connection the server has already closed (terminated, restarted).
    ``statement_cache_size=0``: no prepared statement outlives its transaction (PgBouncer, transaction mode)."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_sqlite_database(Path(database))
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    engine = create_async_engine(
        url,
        # ``pool_size`` connections at most, kept once opened. Overflow connections (opened above the pool
        # size and closed as soon as they are returned) were reopened by the next request under steady load:
        # a PostgreSQL connection per request or so, a tenth of a service's CPU. A request waiting a moment
        # for a pooled connection costs far less; PostgreSQL runs no more statements at once than it has
        # cores anyway.
        pool_size=pool_size,
        max_overflow=0,
        # The connection returned last is handed out first: under load a few hot connections do the work,
        # instead of every backend in turn touching (page-faulting in) shared memory and cold caches.
        pool_use_lifo=True,
        pool_recycle=1800,  # rather than pre-ping: a round trip saved on every checkout
        pool_timeout=pool_timeout_seconds,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": schema},
            **_statement_cache(statement_cache_size),
        },
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    event.listen(engine.sync_engine, "handle_error", _refused_statement_is_a_lost_connection)
    return engine


def _statement_cache(size: int) -> dict[str, Any]:
    """asyncpg's and SQLAlchemy's statement caches; with none, every prepared statement gets a name of its
    own, since a pooler may hand the next transaction a server connection that already has that name."""
    if size > 0:
        return {"statement_cache_size": size}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4().hex}__",
    }


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection the server closed while it was idle (``pg_terminate_backend``, a restart) is
    replaced at checkout, without the round trip of a pre-ping: asyncpg already knows it is closed. The
    pool's other connections opened before it are replaced as they are checked out (the server has usually
    closed them all)."""
    if dbapi_connection.driver_connection.is_closed():
        raise InvalidatePoolError(LOST_CONNECTION)


class Database:
    """The engine and session factory of one service."""

    def __init__(
        self,
        *,
        url: str | None,
        schema: str,
        var_dir: Path,
        service_name: str,
        pool_size: int = 10,
        pool_timeout_seconds: float = 5.0,
        statement_cache_size: int = 100,
        session_url: str | None = None,
    ):
        self.url = resolve_database_url(url, var_dir=var_dir, service_name=service_name)
        self.session_url = (
            resolve_database_url(session_url, var_dir=var_dir, service_name=service_name)
            if (session_url and url)
            else self.url
        )
        """Where connections that outlive a transaction go (``LISTEN``, session locks): not through a
        transaction-mode pooler."""
        self.schema = schema
        self.engine = create_engine(
            self.url,
            schema=schema,
            pool_size=pool_size,
            pool_timeout_seconds=pool_timeout_seconds,
            statement_cache_size=statement_cache_size,
        )
        self.after_commit_listeners: list[Callable[[], None]] = []
        #: Shared by every session this database makes (``session.info``): servicekit's own session-level
        #: wiring (the after-commit listeners of the queue workers, whether statements are traced). A
        #: service's collaborators are not kept here: they are arguments (``<service>.context``).
        self.session_info: dict[str, object] = {"after_commit_listeners": self.after_commit_listeners}
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, info=self.session_info)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


@asynccontextmanager
async def command_database(settings: ServiceSettings, *, schema: str) -> AsyncIterator[Database]:
    """The service's database for one run of its command line: one connection, let go when the run ends.
    ``schema``: the service's own, unless the settings name another."""
    database = Database(
        url=settings.database_url,
        schema=settings.database_schema or schema,
        var_dir=settings.var_dir,
        service_name=settings.service_name,
        pool_size=1,
        statement_cache_size=settings.database_statement_cache_size,
    )
    try:
        yield database
    finally:
        await database.dispose()


async def session_scope(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises.

    Used as a FastAPI dependency with ``scope="function"``, the commit runs before the response is sent, so
    a client never sees a success whose data was not committed.
    """
    async with sessionmaker() as session:
        async with rolled_back_on_error(session):
            yield session
        if not session.in_transaction():
            return  # never used (a hot path that ran plain SQL, or none at all): nothing to commit
        # A failed COMMIT (a deferred constraint) leaves SQLite's transaction open; without the rollback
        # the pooled connection would carry the rejected rows into the next request.
        async with rolled_back_on_error(session):
            await session.commit()


@asynccontextmanager
async def rolled_back_on_error(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Roll ``session`` back when the block raises (cancellation included), then let the error go on."""
    try:
        yield session
    except BaseException:
        await session.rollback()
        raise


class Driver:
    """Plain SQL on the driver (asyncpg) for a hot path: each statement on a pooled connection of its own, and
    a transaction by itself (autocommit), which is why hot paths are written as one statement each.

    SQLAlchemy costs a few hundred microseconds of CPU per statement and unit of work on top of the driver
    (statement construction, cache keys, result processing, session bookkeeping): most of a hot path's cost.
    Here a statement is one pool checkout and one prepared statement (prepared once per connection and cached
    by asyncpg). Each gets a client span like SQLAlchemy's instrumentation gives, when the service traces its
    database (``trace_database``). Parameters are asyncpg's (``$1``…); ``json`` columns take text.
    """

    def __init__(
        self, engine: AsyncEngine, *, traced: bool, after_commit: Sequence[Callable[[], None]] = ()
    ) -> None:
        self.engine = engine
        self.traced = traced
        self.after_commit = after_commit

    def wake_workers(self) -> None:
        """Wake the service's queue workers (outbox relay, ...) after a statement that queued work for them:
        it committed on its own, so no session commit will."""
        for listener in self.after_commit:
            listener()

    async def fetch(self, name: str, statement: str, *args: Any) -> Sequence[Any]:
        """Run ``statement`` and return its rows (asyncpg records). ``name`` names the span.

        A connection asyncpg refuses to start the statement on (:func:`_refused_before_sending`: nothing was
        sent) is discarded and the statement run on another one, a few times at most."""
        refused: BaseException | None = None
        for _ in range(REFUSED_STATEMENT_ATTEMPTS):
            pooled = await self.engine.raw_connection()
            connection: Any = pooled.driver_connection
            try:
                if not self.traced:
                    rows: Sequence[Any] = await connection.fetch(statement, *args)
                    return rows
                with statement_span(name, statement):
                    rows = await connection.fetch(statement, *args)
                    return rows
            except BaseException as exc:
                if not _still_usable(connection, exc):
                    pooled.invalidate()  # closed for good: never handed out again
                if not _refused_before_sending(exc):
                    raise
                refused = exc
            finally:
                await greenlet_spawn(pooled.close)
        raise DisconnectionError(LOST_CONNECTION) from refused

    async def fetchrow(self, name: str, statement: str, *args: Any) -> Any | None:
        """Run ``statement`` and return its first row, or ``None``."""
        rows = await self.fetch(name, statement, *args)
        return rows[0] if rows else None


def _still_usable(connection: Any, error: BaseException) -> bool:
    """Whether an asyncpg connection whose statement raised ``error`` may serve another statement: only when
    the server refused the statement itself and the connection is idle again. One that died (terminated,
    reset), that asyncpg found busy, or whose statement was cut short (a timeout, a cancellation) is
    discarded rather than trusted with the next request."""
    if connection.is_closed() or not isinstance(error, asyncpg.PostgresError):
        return False
    return not isinstance(
        error, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError
    )


def _refused_before_sending(error: BaseException) -> bool:
    """asyncpg refused to start a statement on the connection, before sending anything, because its protocol
    is not idle or the connection is closed. This is how a pooled connection that PostgreSQL terminated
    while it sat idle (``pg_terminate_backend``, a restart) looks for a moment: the server's FATAL message
    has been read and left the protocol consuming an error, but not yet the end of the stream that marks the
    connection closed, so checking ``is_closed()`` at checkout cannot see it. The statement is safe to run
    on another connection; this one must never be used again."""
    for raised in (error, error.__cause__):  # asyncpg's own, or SQLAlchemy's adaptation of it
        if isinstance(raised, asyncpg.exceptions.InternalClientError) and "another operation" in str(raised):
            return True
        if isinstance(raised, asyncpg.InterfaceError) and "connection is closed" in str(raised):
            return True
    return False


def _refused_statement_is_a_lost_connection(context: ExceptionContext) -> BaseException | None:
    """``handle_error`` of the engine: a statement asyncpg refused (:func:`_refused_before_sending`) under a
    session is a lost connection: it is discarded with every other pooled connection opened before (a
    server that terminated one has usually terminated them all), and the request answers ``503``."""
    if _refused_before_sending(context.original_exception):
        context.is_disconnect = True
        return DisconnectionError(LOST_CONNECTION)
    return None


def driver(session: AsyncSession) -> Driver | None:
    """Plain SQL on the database of ``session`` (see :class:`Driver`), outside its unit of work; ``None`` off
    PostgreSQL, where the caller keeps its SQLAlchemy path."""
    engine = session.bind
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        return None
    return Driver(
        engine,
        traced=bool(session.info.get(TRACE_STATEMENTS)),
        after_commit=session.info.get("after_commit_listeners", ()),
    )


def is_postgresql(session: AsyncSession) -> bool:
    """Whether ``session`` runs on PostgreSQL (else the embedded SQLite). Code outside this module asks only
    where the SQL truly differs (advisory locks, ...), and says why next to the question."""
    return session.get_bind().dialect.name == "postgresql"


async def lock_until_commit(
    session: AsyncSession, key: int | str, *, write_lock_on: Table | None = None, wait: bool = True
) -> bool:
    """Serialise the rest of this transaction with every other one that locks ``key`` (a 64-bit number, or a
    name the server hashes); ``False`` when ``wait`` is off and another transaction holds it.

    PostgreSQL takes an advisory lock on ``key`` alone. SQLite has no such lock and runs one writing
    transaction at a time: given ``write_lock_on`` (any table), the transaction takes the database's write
    lock now with a statement that writes nothing, since one that only read first could not take it later
    without failing; without, nothing is locked. On SQLite the lock is always waited for (busy timeout)."""
    if is_postgresql(session):
        number = func.hashtextextended(key, 0) if isinstance(key, str) else key
        lock = func.pg_advisory_xact_lock(number) if wait else func.pg_try_advisory_xact_lock(number)
        taken = await session.scalar(select(lock))
        return wait or bool(taken)
    if write_lock_on is not None:
        column = next(iter(write_lock_on.primary_key.columns))  # never NULL: no row matches
        await session.execute(update(write_lock_on).where(column.is_(None)).values({column.name: column}))
    return True


def _insert_for(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if is_postgresql(session) else sqlite.insert)(table)


InsertValues = Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""One row (column name → value), or several for a multi-row ``INSERT``."""


def insert_ignoring(
    session: AsyncSession,
    table: Any,
    values: InsertValues,
    *,
    conflict: Sequence[Any] | None = None,
    where: ColumnElement[bool] | TextClause | None = None,
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` into ``table`` (a ``Table`` or a mapped class) on either database:
    a row that conflicts on the unique index over ``conflict`` (the columns; ``None``: any unique index) is
    skipped. ``where`` is a partial unique index's predicate, spelled as the index spells it so PostgreSQL
    infers that index. Add ``.returning(...)`` for the rows written; :func:`try_insert` for one row."""
    statement = _insert_for(session, table).values(values)
    if conflict is None:
        return statement.on_conflict_do_nothing()
    return statement.on_conflict_do_nothing(index_elements=list(conflict), index_where=where)


def upsert(
    session: AsyncSession,
    table: Any,
    values: InsertValues,
    *,
    conflict: Sequence[Any],
    update: Mapping[str, Any],
    where: ColumnElement[bool] | TextClause | None = None,
) -> postgresql.Insert | sqlite.Insert:
    """``INSERT … ON CONFLICT (conflict) DO UPDATE SET update`` on either database: the row is inserted, or the
    existing one it conflicts with gets ``update`` (and is locked for the rest of the transaction, which an
    ``update`` that rewrites a value unchanged is often written for)."""
    statement = _insert_for(session, table).values(values)
    return statement.on_conflict_do_update(
        index_elements=list(conflict), index_where=where, set_=dict(update)
    )


async def try_insert(
    session: AsyncSession,
    table: Any,
    values: Mapping[str, Any],
    *,
    conflict: Sequence[Any] | None = None,
    where: ColumnElement[bool] | TextClause | None = None,
) -> bool:
    """Insert one row unless it conflicts (:func:`insert_ignoring`); whether it was inserted. A conflict with a
    row another transaction is writing waits for that transaction, then reports ``False`` if it committed."""
    result = await session.execute(insert_ignoring(session, table, values, conflict=conflict, where=where))
    return bool(cast("CursorResult[Any]", result).rowcount)


class epoch_seconds(FunctionElement[float]):
    """SQL: a timestamp column as seconds since 1970 (fractional), on either database; the difference of two
    is the seconds between them."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds, "postgresql")
def _epoch_seconds_postgresql(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite stores UTC text (``UtcDateTime``); julianday() reads it as days since the Julian epoch.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount.

    PostgreSQL stores ``NUMERIC(38, 18)``. SQLite has no exact decimal type (its NUMERIC is a float), so there
    the amount is stored as fixed-width text (20 integer digits, 18 decimals) whose text order is its numeric
    order, so range filters and sorting work too. Only non-negative amounts are stored: money in this
    suite is an amount of a currency, never a balance.
    """

    impl = String(40)
    cache_ok = True
    INTEGER_DIGITS = 20
    SCALE = 18

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(self.INTEGER_DIGITS + self.SCALE, self.SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"Money takes Decimal, not {type(value).__name__}")
        if not value.is_finite() or value < 0:
            raise ValueError(f"Money must be a finite non-negative amount, got {value}")
        # The default context keeps only 28 digits; NUMERIC(38, 18) needs 38 (+1 for a round-up).
        context = Context(prec=self.INTEGER_DIGITS + self.SCALE + 1)
        if value.adjusted() >= self.INTEGER_DIGITS:
            raise ValueError(f"Money amount {value} exceeds {self.INTEGER_DIGITS} integer digits")
        quantized = value.quantize(Decimal(1).scaleb(-self.SCALE), context=context)
        if len(quantized.as_tuple().digits) > self.INTEGER_DIGITS + self.SCALE:
            raise ValueError(f"Money amount {value} exceeds {self.INTEGER_DIGITS} integer digits")
        if dialect.name == "sqlite":
            return f"{quantized:0{self.INTEGER_DIGITS + self.SCALE + 1}.{self.SCALE}f}"
        return quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return strip_trailing_zeros(value if isinstance(value, Decimal) else Decimal(str(value)))


def decimal_places(amount: Decimal) -> int:
    """How many decimal places ``amount`` needs (``1.500`` → 1, ``1E+2`` → 0), from its digits: exact for any
    length (``normalize()`` would round to the context's 28 digits first, hiding a 38-digit amount's tail)."""
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):
        return 0
    places, last = -exponent, len(digits) - 1
    while places > 0 and last >= 0 and digits[last] == 0:
        places, last = places - 1, last - 1
    return max(places, 0)


def strip_trailing_zeros(amount: Decimal) -> Decimal:
    """``1.500000`` → ``1.5`` and ``10.000`` → ``10``, never into exponent form like ``1E+1``."""
    text_form = format(amount, "f")
    if "." in text_form:
        text_form = text_form.rstrip("0").rstrip(".")
    return Decimal(text_form)


_simulated_now: datetime | None = None


def utcnow() -> datetime:
    """Now, in UTC: the wall clock, or the moment a :class:`SimulatedClock` set (a process replaying a day)."""
    return _simulated_now if _simulated_now is not None else datetime.now(UTC)


class SimulatedClock:
    """While entered, :func:`utcnow` (every timestamp the services write and every deadline they judge by it)
    answers :attr:`now`, moved by :meth:`set`: ``scripts/seed_day.py`` runs the real service code through a
    day in seconds. Process-wide; never entered by a running service."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def set(self, moment: datetime) -> None:
        global _simulated_now
        self.now = _simulated_now = moment

    def __enter__(self) -> SimulatedClock:
        self.set(self.now)
        return self

    def __exit__(self, *_exc: object) -> None:
        global _simulated_now
        _simulated_now = None


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both PostgreSQL (``timestamptz``) and SQLite (naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime takes timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
