"""Signals sent with a commit (``servicekit.signals``): delivered to every listener once the transaction commits,
never when it rolls back, on PostgreSQL (``LISTEN/NOTIFY``) and in process on the embedded database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from servicekit import signals
from servicekit.db import Database
from servicekit.signals import SignalListener, send_signal
from servicekit.testing import async_url, create_database, drop_database, eventually

CHANNEL = "servicekit_test_signal"


@asynccontextmanager
async def signals_database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    name = await create_database("servicekit_signals") if kind == "postgresql" else None
    db = Database(
        url=async_url(name) if name else None, schema="public", var_dir=tmp_path, service_name="signals-test"
    )
    try:
        yield db
    finally:
        await db.dispose()
        if name:
            await drop_database(name)


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with signals_database(request.param, tmp_path) as db:
        yield db


@dataclass
class Listening:
    listener: SignalListener
    heard: list[str] = field(default_factory=list)
    gaps: list[None] = field(default_factory=list)


@asynccontextmanager
async def listening(database: Database) -> AsyncIterator[Listening]:
    """A started listener on :data:`CHANNEL` recording what it hears and its gaps; stopped afterwards."""
    heard: list[str] = []
    gaps: list[None] = []
    listener = SignalListener(
        database, channel=CHANNEL, on_signal=heard.append, on_gap=lambda: gaps.append(None)
    )
    listener.start()
    try:
        yield Listening(listener, heard, gaps)
    finally:
        await listener.stop()


async def test_a_signal_arrives_after_its_commit_and_never_after_a_rollback(database: Database) -> None:
    async with listening(database) as seen:
        listener, heard, gaps = seen.listener, seen.heard, seen.gaps
        await asyncio.wait_for(listener.listening.wait(), 5)
        async with database.sessionmaker() as session:
            await send_signal(session, channel=CHANNEL, payload="rolled back")
            await session.rollback()
            await send_signal(session, channel=CHANNEL, payload="first")
            assert heard == []  # nothing before the commit
            await send_signal(session, channel=CHANNEL, payload="second")
            await session.commit()
        await eventually(lambda: _value(list(heard)), until=lambda got: len(got) >= 2, within=5)
        assert heard == ["first", "second"]  # in the order sent, the rolled-back one never
        assert gaps == []
    assert not listener.listening.is_set()


class _Unanswering:
    """A listening connection that went quiet on the way (an idle timeout, a failover without a reset):
    never reported closed, and a query on it never comes back."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def execute(self, *_args: Any, **_kwargs: Any) -> str:
        await asyncio.Event().wait()
        return ""


@pytest.fixture
async def postgres(tmp_path: Path) -> AsyncIterator[Database]:
    """PostgreSQL only: the embedded database delivers signals in process, with no connection to lose."""
    async with signals_database("postgresql", tmp_path) as db:
        yield db


async def test_a_listening_connection_that_stops_answering_is_replaced(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = postgres
    monkeypatch.setattr(signals, "KEEPALIVE_SECONDS", 0.05)
    monkeypatch.setattr(signals, "KEEPALIVE_TIMEOUT_SECONDS", 0.05)
    connect = SignalListener._connect
    made: list[Any] = []

    async def first_goes_quiet(self: SignalListener) -> Any:
        connection = await connect(self)
        made.append(connection)
        return _Unanswering(connection) if len(made) == 1 else connection

    monkeypatch.setattr(SignalListener, "_connect", first_goes_quiet)
    async with listening(database) as seen:
        listener, heard, gaps = seen.listener, seen.heard, seen.gaps
        # the quiet connection is dropped and a new one listens; streams are told to read again
        await eventually(lambda: _value(len(gaps)), until=lambda n: n >= 1, within=10)
        await asyncio.wait_for(listener.listening.wait(), 5)
        async with database.sessionmaker.begin() as session:
            await send_signal(session, channel=CHANNEL, payload="after the gap")
        await eventually(lambda: _value(heard), until=lambda h: "after the gap" in h, within=5)
    assert made[0].is_closed()


async def _value(value: Any) -> Any:
    """``value`` as the awaitable ``servicekit.testing.eventually`` polls."""
    return value


async def test_the_listening_connection_goes_to_the_session_url(tmp_path: Path) -> None:
    """Behind PgBouncer in transaction mode ``LISTEN`` would hear nothing: ``DATABASE_SESSION_URL`` names the
    server reached directly, and the listening connection opens there, not where the pool's connections go."""
    pooled, direct = await create_database("servicekit_signals"), await create_database("servicekit_signals")
    db = Database(
        url=async_url(pooled),
        session_url=async_url(direct),
        schema="public",
        var_dir=tmp_path,
        service_name="signals-test",
    )
    try:
        async with listening(db) as state:
            await eventually(lambda: _true(state.listener.listening.is_set()), message="listening")
            async with db.engine.connect() as connection:
                databases = await connection.scalars(
                    text("SELECT datname FROM pg_stat_activity WHERE application_name = 'public-signals'")
                )
                assert list(databases) == [direct]
    finally:
        await db.dispose()
        await drop_database(pooled)
        await drop_database(direct)


async def _true(value: bool) -> bool:
    return value
