"""Exact money and UTC timestamps on both SQLite and PostgreSQL; the embedded URL; one schema per service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, Table, insert, select, text
from sqlalchemy.exc import StatementError

from servicekit.db import Database, Money, UtcDateTime, new_metadata, resolve_database_url
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
