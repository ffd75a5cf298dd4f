"""Fixtures of servicekit's own tests (the plugin ``servicekit.testing`` provides the rest)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from servicekit.apikeys import hash_key, mint_key
from servicekit.db import Database
from servicekit.telemetry import add_span_processor, configure_tracing
from servicekit.testing import ServiceProcess, async_url, create_database, drop_database
from servicekit.testing.kitapps import PEER_SCHEMA, Peer, create_tables, demo_metadata, receiver_metadata

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database of this test (asyncpg URL), dropped afterwards."""
    name = await create_database("sk_test")
    try:
        yield async_url(name)
    finally:
        await drop_database(name)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process finishes during the test (the provider is process-wide, sampling 1.0)."""
    configure_tracing(service="servicekit-tests")
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def needs_peer(item: pytest.Item) -> bool:
    return item.path.is_relative_to(TESTS_DIR) and "peer" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """This directory's tests that need the peer process run last, so it boots while the others run."""
    items.sort(key=needs_peer)


@pytest.fixture(scope="session", autouse=True)
async def peer_boot(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[asyncio.Task[Peer] | None]:
    """Starts booting the peer process at the first test of the session when any test will need it."""
    if not any(needs_peer(item) for item in request.session.items):
        yield None
        return
    key, key_without_scope = mint_key("kc"), mint_key("kc")
    api_keys = [
        {"name": "kit-caller", "hash": hash_key(key), "scopes": ["stock:read", "events:publish"]},
        {"name": "kit-caller", "hash": hash_key(key_without_scope), "scopes": []},
    ]
    var_dir = tmp_path_factory.mktemp("peer")
    name = await create_database("sk_peer")
    database = Database(url=async_url(name), schema=PEER_SCHEMA, var_dir=var_dir, service_name="kit-peer")
    process = ServiceProcess(
        app="servicekit.testing.kitapps:peer_app",
        env={
            "KIT_SERVICE_NAME": "kit-peer",
            "KIT_VAR_DIR": str(var_dir),
            "KIT_DATABASE_URL": async_url(name),
            "KIT_API_KEYS": json.dumps(api_keys),
            "KIT_TRACE_SAMPLE_RATIO": "0",
        },
        log_path=var_dir / "peer.log",
    )

    async def boot() -> Peer:
        for metadata in (demo_metadata, receiver_metadata):
            await create_tables(database, metadata)
        await process.start(ready_within=90)
        return Peer(process=process, key=key, key_without_scope=key_without_scope, database=database)

    task = asyncio.create_task(boot(), name="boot kit-peer")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await process.stop()
        await database.dispose()
        await drop_database(name)


@pytest.fixture(scope="session")
async def peer(peer_boot: asyncio.Task[Peer] | None) -> Peer:
    """``servicekit.testing.kitapps:peer_app`` as a real uvicorn process on a PostgreSQL database of its own, shared by the
    client, telemetry and outbox tests (a process start takes seconds on a busy machine).

    It runs with ``trace_sample_ratio=0``: it records no trace of its own, only those its callers sampled.
    """
    assert peer_boot is not None
    return await peer_boot
