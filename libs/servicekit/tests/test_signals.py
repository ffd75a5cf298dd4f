"""Signals sent with a commit (``servicekit.signals``): delivered to every listener once the transaction commits,
never when it rolls back, on PostgreSQL (``LISTEN/NOTIFY``) and in process on the embedded database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servicekit.db import Database
from servicekit.signals import SignalListener, send_signal
from servicekit.testing import async_url, create_database, drop_database, eventually

CHANNEL = "servicekit_test_signal"


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    name = await create_database("servicekit_signals") if request.param == "postgresql" else None
    db = Database(
        url=async_url(name) if name else None, schema="public", var_dir=tmp_path, service_name="signals-test"
    )
    try:
        yield db
    finally:
        await db.dispose()
        if name:
            await drop_database(name)


async def test_a_signal_arrives_after_its_commit_and_never_after_a_rollback(database: Database) -> None:
    heard: list[str] = []
    gaps: list[None] = []
    listener = SignalListener(
        database, channel=CHANNEL, on_signal=heard.append, on_gap=lambda: gaps.append(None)
    )
    listener.start()
    try:
        await asyncio.wait_for(listener.listening.wait(), 5)
        async with database.sessionmaker() as session:
            await send_signal(session, channel=CHANNEL, payload="rolled back")
            await session.rollback()
            await send_signal(session, channel=CHANNEL, payload="first")
            assert heard == []  # nothing before the commit
            await send_signal(session, channel=CHANNEL, payload="second")
            await session.commit()
        await eventually(lambda: _copy(heard), until=lambda got: len(got) >= 2, within=5)
        assert heard == ["first", "second"]  # in the order sent, the rolled-back one never
        assert gaps == []
    finally:
        await listener.stop()
    assert not listener.listening.is_set()


async def _copy(heard: list[str]) -> list[str]:
    return list(heard)
