"""The retention sweep (``servicekit.retention``) on the outbox and the inbox, on PostgreSQL and SQLite:
delivered events and processed ids past their retention go; pending, dead-lettered and recent ones stay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from servicekit.app import Runtime
from servicekit.db import Database, new_metadata, utcnow
from servicekit.outbox import delivered_events, inbox_table, outbox_table, processed_events
from servicekit.retention import RetentionRule, forget_expired
from servicekit.testing import async_url, create_database, drop_database, eventually
from servicekit.testing.kitapps import KitSettings, create_tables

SCHEMA = "kit_retention"
metadata = new_metadata()
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
KEEP = timedelta(days=7)


@dataclass(frozen=True)
class Store:
    """Where a test's database lives: a PostgreSQL URL, or ``None`` for a SQLite file under ``var_dir``."""

    url: str | None
    var_dir: Path

    def database(self) -> Database:
        return Database(url=self.url, schema=SCHEMA, var_dir=self.var_dir, service_name="kit-retention")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Store]:
    name = await create_database("sk_retention") if request.param == "postgresql" else None
    store = Store(url=async_url(name) if name else None, var_dir=tmp_path_factory.mktemp("retention"))
    database = store.database()
    assert database.engine.dialect.name == request.param
    try:
        await create_tables(database, metadata)
        yield store
    finally:
        await database.dispose()
        if name:
            await drop_database(name)


@pytest.fixture
async def database(store: Store) -> AsyncIterator[Database]:
    """The SQLite or the PostgreSQL database, with an empty outbox and inbox."""
    database = store.database()
    async with database.engine.begin() as connection:
        await connection.execute(outbox.delete())
        await connection.execute(inbox.delete())
    try:
        yield database
    finally:
        await database.dispose()


def event(
    *, created: timedelta, delivered: timedelta | None = None, dead: timedelta | None = None
) -> dict[str, Any]:
    """An outbox row created ``created`` ago, delivered or dead-lettered that long ago (else pending)."""
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "destination": "kit-peer",
        "event_type": "kit.effect",
        "aggregate_id": None,
        "payload": {},
        "traceparent": None,
        "created_at": now - created,
        "available_at": now - created,
        "attempts": 1,
        "delivered_at": None if delivered is None else now - delivered,
        "dead_at": None if dead is None else now - dead,
        "last_error": None,
    }


def received(age: timedelta) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "kit.effect",
        "source": "kit-peer",
        "received_at": utcnow() - age,
    }


async def insert(
    database: Database, *, events: Sequence[dict[str, Any]] = (), ids: Sequence[dict[str, Any]] = ()
) -> None:
    async with database.engine.begin() as connection:
        if events:
            await connection.execute(outbox.insert(), events)
        if ids:
            await connection.execute(inbox.insert(), ids)


async def remaining(database: Database) -> tuple[set[str], set[str]]:
    async with database.sessionmaker() as session:
        events = set(await session.scalars(select(outbox.c.id)))
        ids = set(await session.scalars(select(inbox.c.event_id)))
    return events, ids


def rules() -> list[RetentionRule]:
    return [delivered_events(outbox, keep=KEEP), processed_events(inbox, keep=KEEP)]


async def test_delivered_and_processed_events_past_retention_go_the_others_stay(database: Database) -> None:
    old, recent = timedelta(days=8), timedelta(days=6)
    gone_event = event(created=old, delivered=old)
    kept_events = [
        event(created=old, delivered=recent),  # delivered late, still within its retention
        event(created=old),  # pending for ever so long: still to deliver
        event(created=old, dead=old),  # dead-lettered: an operator's to replay
        event(created=timedelta(minutes=1), delivered=timedelta(seconds=5)),
    ]
    gone_id, kept_id = received(old), received(recent)
    await insert(database, events=[gone_event, *kept_events], ids=[gone_id, kept_id])

    removed = await forget_expired(database=database, rules=rules())

    assert removed == 2
    assert await remaining(database) == ({e["id"] for e in kept_events}, {kept_id["event_id"]})
    assert await forget_expired(database=database, rules=rules()) == 0  # idempotent


async def test_a_backlog_goes_in_bounded_batches(database: Database) -> None:
    old = timedelta(days=30)
    await insert(
        database,
        events=[event(created=old, delivered=old) for _ in range(7)],
        ids=[received(old) for _ in range(5)],
    )

    removed = await forget_expired(database=database, rules=rules(), batch_size=2)

    assert removed == 12
    assert await remaining(database) == (set(), set())


async def test_replicas_sweeping_at_once_delete_each_row_once(database: Database, store: Store) -> None:
    old = timedelta(days=30)
    await insert(database, events=[event(created=old, delivered=old) for _ in range(60)])
    other = store.database()  # a second replica
    try:
        counts = await asyncio.gather(
            forget_expired(database=database, rules=rules(), batch_size=5),
            forget_expired(database=other, rules=rules(), batch_size=5),
        )
    finally:
        await other.dispose()
    assert sum(counts) == 60
    assert await remaining(database) == (set(), set())


async def test_the_runtime_sweeps_its_outbox_and_inbox_in_the_background(
    database: Database, store: Store
) -> None:
    settings = KitSettings(
        service_name="kit-retention",
        var_dir=store.var_dir,
        database_url=store.url,
        database_schema=SCHEMA,
        trace_database=False,
        retention_sweep_seconds=0.05,
    )
    runtime = Runtime(settings, schema=SCHEMA)
    runtime.add_outbox_relay(outbox)
    runtime.add_inbox_retention(inbox)
    assert [rule.name for rule in runtime.retention_rules] == ["outbox delivered", "inbox processed"]
    old = timedelta(days=settings.inbox_retention_days + 1)
    kept = received(timedelta(days=1))
    await insert(database, ids=[received(old), kept])
    await runtime.start()
    try:
        await eventually(lambda: remaining(database), until=lambda r: r[1] == {kept["event_id"]})
    finally:
        await runtime.stop()


def test_the_inbox_must_outlive_every_redelivery_of_its_senders(tmp_path: Path) -> None:
    """With the default outbox settings an event may be delivered again for about twenty minutes after its
    first attempt; an inbox forgetting sooner than its senders stop redelivering is refused at startup."""
    defaults = KitSettings(var_dir=tmp_path)
    assert timedelta(minutes=15) < defaults.outbox_redelivery_span < timedelta(minutes=30)
    with pytest.raises(ValidationError, match="inbox_retention_days"):
        KitSettings(var_dir=tmp_path, outbox_max_attempts=400, outbox_backoff_max_seconds=3600)
    assert (
        KitSettings(
            var_dir=tmp_path,
            outbox_max_attempts=400,
            outbox_backoff_max_seconds=3600,
            inbox_retention_days=30,
        ).inbox_retention_days
        == 30
    )
