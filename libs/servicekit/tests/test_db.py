"""Exact money and UTC timestamps on both SQLite and PostgreSQL; the embedded URL; one schema per service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Index, Integer, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from servicekit.db import (
    Database,
    Money,
    SimulatedClock,
    UtcDateTime,
    create_engine,
    epoch_seconds,
    insert_ignoring,
    lock_until_commit,
    new_metadata,
    resolve_database_url,
    try_insert,
    upsert,
    utcnow,
)
from servicekit.testing import async_url, create_database, drop_database
from servicekit.testing.kitapps import create_tables

metadata = new_metadata()
amount_table = Table(
    "amount",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("value", Money, nullable=True),
    Column("at", UtcDateTime, nullable=True),
)
LIVE = "status = 'open'"
claim_table = Table(
    "claim",
    metadata,
    Column("note", String(20), primary_key=True),
    Column("key", String(20), nullable=False),
    # One open claim per key; closed ones pile up (a partial unique index, like the notifier's live alerts).
    Index("uq_claim_open_key", "key", unique=True, postgresql_where=text(LIVE), sqlite_where=text(LIVE)),
    Column("status", String(10), nullable=False),
    Column("seen", Integer, nullable=False, server_default="0"),
)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def shared_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    name = await create_database("sk_db") if request.param == "postgresql" else None
    url = async_url(name) if name else None
    var_dir = tmp_path_factory.mktemp("db")
    database = Database(url=url, schema="kit_db", var_dir=var_dir, service_name="kit-db")
    assert database.engine.dialect.name == request.param
    try:
        await create_tables(database, metadata)
        yield database
    finally:
        await database.dispose()
        if name:
            await drop_database(name)


@pytest.fixture
async def database(shared_database: Database) -> Database:
    """The SQLite or the PostgreSQL database, with an empty ``amount`` table."""
    async with shared_database.engine.begin() as connection:
        await connection.execute(amount_table.delete())
        await connection.execute(claim_table.delete())
    return shared_database


async def insert_values(database: Database, **values: Any) -> int:
    async with database.sessionmaker.begin() as session:
        row_id = await session.scalar(insert(amount_table).values(**values).returning(amount_table.c.id))
    assert row_id is not None
    return int(row_id)


async def read_value(database: Database, row_id: int, column: str = "value") -> Any:
    async with database.sessionmaker() as session:
        return await session.scalar(select(amount_table.c[column]).where(amount_table.c.id == row_id))


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        ("0.000000000000000001", "0.000000000000000001"),
        ("12345678901234567890.123456789012345678", "12345678901234567890.123456789012345678"),
        ("99999999999999999999.999999999999999999", "99999999999999999999.999999999999999999"),
        ("1.50", "1.5"),
        ("10", "10"),
        ("100.000", "100"),
        ("0", "0"),
    ],
)
async def test_money_reads_back_exactly_and_never_in_exponent_form(
    database: Database, stored: str, read: str
) -> None:
    value = await read_value(database, await insert_values(database, value=Decimal(stored)))
    assert isinstance(value, Decimal)
    assert value == Decimal(stored)
    assert format(value, "f") == read  # trailing zeros gone, every significant digit kept
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    assert exponent <= 0  # never 1E+1: str() shows an integer amount as digits
    if value.adjusted() >= -6:
        assert str(value) == read


async def test_money_filters_and_sorts_numerically(database: Database) -> None:
    for amount in ("100", "9", "10", "9.5", "0.25", "1000000.000000000000000001"):
        await insert_values(database, value=Decimal(amount))
    async with database.sessionmaker() as session:
        ordered = (await session.scalars(select(amount_table.c.value).order_by(amount_table.c.value))).all()
        between = (
            await session.scalars(
                select(amount_table.c.value)
                .where(amount_table.c.value > Decimal("9"), amount_table.c.value < Decimal("100"))
                .order_by(amount_table.c.value.desc())
            )
        ).all()
    assert [str(v) for v in ordered] == ["0.25", "9", "9.5", "10", "100", "1000000.000000000000000001"]
    assert [str(v) for v in between] == ["10", "9.5"]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (1.5, "Money takes Decimal, not float"),
        (3, "Money takes Decimal, not int"),
        (Decimal("-0.01"), "non-negative"),
        (Decimal("NaN"), "non-negative"),
        (Decimal("Infinity"), "non-negative"),
        (Decimal("100000000000000000000"), "exceeds 20 integer digits"),
    ],
)
async def test_money_rejects_floats_negative_and_oversized_amounts(
    database: Database, value: Any, error: str
) -> None:
    with pytest.raises(StatementError, match=error):
        await insert_values(database, value=value)
    async with database.sessionmaker() as session:
        assert (await session.scalars(select(amount_table.c.id))).all() == []


async def test_utc_datetime_reads_back_aware_utc(database: Database) -> None:
    moment = datetime(2025, 3, 30, 1, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3)))
    value = await read_value(database, await insert_values(database, at=moment), "at")
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    assert value == moment
    assert value.hour == 22  # 01:30 at +03:00 is 22:30 UTC the day before
    with pytest.raises(StatementError, match="timezone-aware"):
        await insert_values(database, at=datetime(2025, 1, 1))


def test_no_database_url_means_a_sqlite_file_under_var_dir(tmp_path: Path) -> None:
    var_dir = tmp_path / "var" / "nested"
    url = resolve_database_url(None, var_dir=var_dir, service_name="wallet-pool")
    assert url == f"sqlite+aiosqlite:///{var_dir}/wallet-pool.db"
    assert var_dir.is_dir()
    assert resolve_database_url("", var_dir=var_dir, service_name="x").endswith("/x.db")
    assert (
        resolve_database_url("postgresql://u:p@db:5432/desk", var_dir=var_dir, service_name="x")
        == "postgresql+asyncpg://u:p@db:5432/desk"
    )


async def test_the_embedded_database_is_created_in_var_dir(tmp_path: Path) -> None:
    database = Database(url=None, schema="kit_db", var_dir=tmp_path, service_name="kit-embedded")
    try:
        await database.ping()
    finally:
        await database.dispose()
    assert (tmp_path / "kit-embedded.db").is_file()


async def test_postgres_tables_land_in_the_services_schema(pg_url: str, tmp_path: Path) -> None:
    database = Database(url=pg_url, schema="svc_x", var_dir=tmp_path, service_name="svc-x")
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text("CREATE SCHEMA svc_x"))
        async with database.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            rows = (
                await connection.execute(
                    text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'amount'")
                )
            ).all()
            search_path = await connection.scalar(text("SHOW search_path"))
    finally:
        await database.dispose()
    assert [r.table_schema for r in rows] == ["svc_x"]
    assert search_path == "svc_x"


def claim(key: str, note: str, status: str = "open") -> dict[str, Any]:
    return {"key": key, "status": status, "note": note}


async def claims(database: Database) -> list[tuple[str, str, str, int]]:
    async with database.sessionmaker() as session:
        c = claim_table.c
        rows = await session.execute(select(c.key, c.status, c.note, c.seen).order_by(c.note))
        return [tuple(row) for row in rows]


async def test_try_insert_skips_a_row_that_conflicts_on_the_named_index(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        first = await try_insert(session, claim_table, claim("k", "a"), conflict=["key"], where=text(LIVE))
        again = await try_insert(session, claim_table, claim("k", "b"), conflict=["key"], where=text(LIVE))
        closed = await try_insert(
            session, claim_table, claim("k", "c", "closed"), conflict=["key"], where=text(LIVE)
        )

    assert (first, again, closed) == (True, False, True)
    assert await claims(database) == [("k", "open", "a", 0), ("k", "closed", "c", 0)]


async def test_a_conflict_on_another_unique_index_than_the_named_one_still_fails(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        assert await try_insert(session, claim_table, claim("k", "a"), conflict=["key"], where=text(LIVE))
    with pytest.raises(IntegrityError):
        async with database.sessionmaker.begin() as session:
            await try_insert(session, claim_table, claim("other", "a"), conflict=["key"], where=text(LIVE))


async def test_without_a_named_index_any_conflict_is_skipped(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        assert await try_insert(session, claim_table, claim("k", "a"))
        assert not await try_insert(session, claim_table, claim("k", "b"))  # the open key
        assert not await try_insert(session, claim_table, claim("m", "a"))  # the note

    assert await claims(database) == [("k", "open", "a", 0)]


async def test_insert_ignoring_many_rows_returns_those_written(database: Database) -> None:
    async with database.sessionmaker.begin() as session:
        await try_insert(session, claim_table, claim("k", "b"), conflict=["note"])
        statement = insert_ignoring(
            session, claim_table, [claim("x", "a"), claim("y", "b"), claim("z", "c")], conflict=["note"]
        ).returning(claim_table.c.note)
        written = (await session.scalars(statement)).all()

    assert sorted(written) == ["a", "c"]
    assert [row[2] for row in await claims(database)] == ["a", "b", "c"]


async def test_upsert_inserts_then_updates_only_what_it_names(database: Database) -> None:
    c = claim_table.c
    async with database.sessionmaker.begin() as session:
        for seen in (1, 2):
            statement = upsert(
                session,
                claim_table,
                claim("k", "a") | {"seen": seen},
                conflict=["note"],
                update={"seen": seen},
            ).returning(c.seen)
            assert await session.scalar(statement) == seen
        later = upsert(
            session, claim_table, claim("new", "a", "closed"), conflict=["note"], update={"seen": 3}
        )
        await session.execute(later)

    assert await claims(database) == [("k", "open", "a", 3)]


async def test_epoch_seconds_reads_a_moment_as_seconds_since_1970(database: Database) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    row_id = await insert_values(database, at=start)
    async with database.sessionmaker() as session:
        seconds = await session.scalar(
            select(epoch_seconds(amount_table.c.at)).where(amount_table.c.id == row_id)
        )
        elapsed = await session.scalar(
            select(epoch_seconds(amount_table.c.at) - epoch_seconds(amount_table.c.at)).where(
                amount_table.c.id == row_id
            )
        )

    assert seconds == pytest.approx(start.timestamp(), abs=1e-3)
    assert elapsed == pytest.approx(0.0, abs=1e-6)


async def test_lock_until_commit_serialises_transactions_that_take_the_same_key(database: Database) -> None:
    async with database.sessionmaker.begin() as holder:
        assert await lock_until_commit(holder, 42, write_lock_on=claim_table)
        assert await lock_until_commit(holder, "order:1")
        if database.is_postgres:  # an advisory lock per key: another key is free, the same one is not
            async with database.sessionmaker.begin() as other:
                assert not await lock_until_commit(other, 42, wait=False)
                assert not await lock_until_commit(other, "order:1", wait=False)
                assert await lock_until_commit(other, 43, wait=False)
                assert await lock_until_commit(other, "order:2", wait=False)
        else:  # SQLite: the holder took the database's write lock, though it wrote nothing
            async with database.engine.connect() as other:
                await other.exec_driver_sql("PRAGMA busy_timeout = 0")
                try:
                    with pytest.raises(OperationalError, match="locked"):
                        await other.execute(insert(claim_table).values(claim("k", "a")))
                finally:
                    await other.rollback()
                    await other.exec_driver_sql("PRAGMA busy_timeout = 30000")
    async with database.sessionmaker.begin() as later:
        assert await lock_until_commit(later, 42, write_lock_on=claim_table, wait=False)


async def test_without_a_statement_cache_no_prepared_statement_outlives_its_transaction(pg_url: str) -> None:
    """DATABASE_STATEMENT_CACHE_SIZE=0, for PgBouncer in transaction mode: the next transaction may run on
    another server connection, so none may count on a statement an earlier one prepared, nor collide with it."""
    engine = create_engine(pg_url, schema="public", pool_size=1, statement_cache_size=0)
    seen = []
    try:
        for _ in range(3):
            async with engine.begin() as connection:
                await connection.execute(text("SELECT CAST(:n AS int)"), {"n": 1})
                prepared = (await connection.execute(text("SELECT name FROM pg_prepared_statements"))).all()
                seen.append([name for (name,) in prepared])
    finally:
        await engine.dispose()
    assert [len(names) for names in seen] == [1, 1, 1], "only the statement running now is prepared"
    assert len({names[0] for names in seen}) == 3, "each under a name of its own"


def test_a_simulated_clock_sets_utcnow_while_entered_and_moves_only_when_set() -> None:
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with SimulatedClock(start) as clock:
        assert utcnow() == start
        clock.set(start + timedelta(hours=2))
        assert utcnow() == clock.now == start + timedelta(hours=2)
    assert abs(utcnow() - datetime.now(UTC)) < timedelta(seconds=5)  # the wall clock again
