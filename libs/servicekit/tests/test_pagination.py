"""Keyset pages on SQLite and PostgreSQL: every row once, in order, in both directions, with ties on the moment;
cursors that come back edited or from another list are a 422 naming ``cursor``."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel
from sqlalchemy import Column, Integer, String, Table, insert, select

from servicekit.db import Database, UtcDateTime, new_metadata
from servicekit.errors import ValidationFailedError
from servicekit.pagination import Keyset, Page
from servicekit.testing import async_url, create_database, drop_database
from servicekit.testing.kitapps import create_tables

metadata = new_metadata()
events = Table(
    "paged_event",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("happened_at", UtcDateTime, nullable=False),
    Column("kind", String(10), nullable=False),
)
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Ids out of step with time, and three rows sharing each of two moments: the id alone breaks those ties.
ROWS = [
    ("e", 1, START, "a"),
    ("b", 2, START + timedelta(seconds=1), "a"),
    ("d", 3, START + timedelta(seconds=1), "b"),
    ("a", 4, START + timedelta(seconds=1), "a"),
    ("c", 5, START + timedelta(seconds=2), "a"),
    ("g", 6, START + timedelta(seconds=3), "b"),
    ("f", 7, START + timedelta(seconds=3), "a"),
    ("h", 8, START + timedelta(seconds=3), "a"),
]
NEWEST = Keyset("events", events.c.happened_at, events.c.id, newest_first=True)
OLDEST = Keyset("events-oldest", events.c.happened_at, events.c.id, newest_first=False)
BY_SEQ = Keyset("events-by-seq", events.c.seq, newest_first=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    name = await create_database("sk_pages") if request.param == "postgresql" else None
    database = Database(
        url=async_url(name) if name else None,
        schema="kit_pages",
        var_dir=tmp_path_factory.mktemp("pages"),
        service_name="kit-pages",
    )
    assert database.engine.dialect.name == request.param
    try:
        await create_tables(database, metadata)
        async with database.sessionmaker.begin() as session:
            await session.execute(
                insert(events),
                [{"id": i, "seq": s, "happened_at": at, "kind": k} for i, s, at, k in ROWS],
            )
        yield database
    finally:
        await database.dispose()
        if name:
            await drop_database(name)


async def every_page(database: Database, keyset: Keyset, *, limit: int, kind: str | None = None) -> list[str]:
    """The ids of every page, walked with the cursors the pages hand out."""
    seen: list[str] = []
    cursor: str | None = None
    while True:
        statement = select(events)
        if kind is not None:
            statement = statement.where(events.c.kind == kind)
        async with database.sessionmaker() as session:
            rows = (await session.execute(keyset.select(statement, cursor=cursor, limit=limit))).all()
        page, cursor = keyset.cut(rows, limit=limit)
        assert len(page) <= limit
        seen.extend(row.id for row in page)
        if cursor is None:
            return seen


def in_order(*, newest_first: bool, kind: str | None = None) -> list[str]:
    rows = sorted((at, i) for i, _, at, k in ROWS if kind in (None, k))
    ids = [i for _, i in rows]
    return ids[::-1] if newest_first else ids


@pytest.mark.parametrize("limit", [1, 2, 3, 8, 50])
async def test_pages_newest_first_hold_every_row_once_with_ties_on_the_moment(
    database: Database, limit: int
) -> None:
    assert await every_page(database, NEWEST, limit=limit) == in_order(newest_first=True)


@pytest.mark.parametrize("limit", [1, 2, 3, 8, 50])
async def test_pages_oldest_first_hold_every_row_once_with_ties_on_the_moment(
    database: Database, limit: int
) -> None:
    assert await every_page(database, OLDEST, limit=limit) == in_order(newest_first=False)


async def test_a_filtered_list_pages_within_its_filter(database: Database) -> None:
    assert await every_page(database, NEWEST, limit=2, kind="a") == in_order(newest_first=True, kind="a")


async def test_an_integer_keyset_pages_by_that_column(database: Database) -> None:
    seen: list[int] = []
    cursor: str | None = None
    while True:
        async with database.sessionmaker() as session:
            statement = BY_SEQ.select(select(events.c.seq), cursor=cursor, limit=3)
            page, cursor = BY_SEQ.cut(
                (await session.scalars(statement)).all(), limit=3, position=lambda s: [s]
            )
        seen.extend(page)
        if cursor is None:
            break
    assert seen == [8, 7, 6, 5, 4, 3, 2, 1]


async def test_the_last_full_page_has_no_next_cursor(database: Database) -> None:
    async with database.sessionmaker() as session:
        rows = (await session.execute(NEWEST.select(select(events), cursor=None, limit=len(ROWS)))).all()
    page, cursor = NEWEST.cut(rows, limit=len(ROWS))
    assert (len(page), cursor) == (len(ROWS), None)


def test_a_cursor_round_trips_moments_strings_and_integers() -> None:
    keyset = Keyset("mixed", events.c.happened_at, events.c.id, events.c.seq, newest_first=True)
    moment = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))

    values = keyset.decode(keyset.encode([moment, "ORD-1|x", 42]))

    assert values == (moment, "ORD-1|x", 42)
    assert isinstance(values[0], datetime)
    assert values[0].utcoffset() == timedelta(0)  # the same instant, in UTC


def refusal(keyset: Keyset, cursor: str) -> ValidationFailedError:
    with pytest.raises(ValidationFailedError) as refused:
        keyset.decode(cursor)
    return refused.value


def assert_names_cursor(error: ValidationFailedError) -> None:
    assert error.status == 422
    assert [(e["field"], e["type"]) for e in error.to_problem()["errors"]] == [("cursor", "invalid_cursor")]


def test_a_cursor_from_another_list_is_refused() -> None:
    other = Keyset("notifications", events.c.happened_at, events.c.id, newest_first=True)
    cursor = other.encode([START, "a"])

    assert_names_cursor(refusal(NEWEST, cursor))


@pytest.mark.parametrize("position", [0, 3, 9, -2])
def test_an_edited_cursor_is_refused(position: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(NEWEST.encode([START, "b"]) + "=="))
    raw[position] ^= 0x01

    assert_names_cursor(refusal(NEWEST, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")))


@pytest.mark.parametrize("cursor", ["", "bm9wZQ", "not-a-cursor!", "=" * 8, "MjAyNi0wMy0wMVQxMjowMDowMHxh"])
def test_garbage_is_refused(cursor: str) -> None:
    assert_names_cursor(refusal(NEWEST, cursor))


def test_a_cursor_whose_values_do_not_fit_the_columns_is_refused() -> None:
    """Even with a valid digest (the digest is a check, not a secret), values of the wrong kind or number
    never reach the database."""
    same_name = Keyset("events", events.c.seq, events.c.id, newest_first=True)  # int where a moment goes

    assert_names_cursor(refusal(NEWEST, same_name.encode([7, "a"])))
    assert_names_cursor(refusal(NEWEST, Keyset("events", events.c.id, newest_first=True).encode(["a"])))
    naive = Keyset("events", events.c.id, events.c.id, newest_first=True).encode(["2026-03-01T12:00:00", "a"])
    assert_names_cursor(refusal(NEWEST, naive))
    as_text = Keyset("events", events.c.id, events.c.id, newest_first=True)
    assert_names_cursor(refusal(NEWEST, as_text.encode(["0001-01-01T00:00:00+05:00", "a"])))
    assert_names_cursor(refusal(NEWEST, as_text.encode([START.isoformat(), "a\x00"])))
    too_large = Keyset("events-by-seq", events.c.seq, newest_first=True).encode([2**63])
    assert_names_cursor(refusal(BY_SEQ, too_large))


def test_a_page_model_names_its_items_and_describes_its_cursor() -> None:
    class Thing(BaseModel):
        name: str

    class ThingPage(Page[Thing]):
        """Things, newest first."""

    schema = ThingPage.model_json_schema()

    assert schema["title"] == "ThingPage"
    assert schema["properties"]["items"]["items"] == {"$ref": "#/$defs/Thing"}
    assert "`cursor`" in schema["properties"]["next_cursor"]["description"]
    assert ThingPage(items=[Thing(name="x")], next_cursor=None).model_dump() == {
        "items": [{"name": "x"}],
        "next_cursor": None,
    }
