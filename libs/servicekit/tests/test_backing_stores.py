"""PostgreSQL and Redis failing under a service: a request gets ``503 backing_store_unavailable`` with
``Retry-After`` (never a bare 500) and the service serves again once the store is back; a burst queues for
connections instead of being refused; rate limits and the cache fail open or closed as each decides; a
worker waits an outage out; a statement cut short never hands its connection to the next one."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from servicekit.app import DbSession
from servicekit.backing import outlasting_outages, redis_client
from servicekit.cache import ExpiringCache
from servicekit.db import Database, driver
from servicekit.errors import BackingStoreUnavailableError, RateLimitedError
from servicekit.ratelimit import RateLimiter
from servicekit.state import service_state
from servicekit.testing import (
    POSTGRES_ADMIN_URL,
    PrivateRedis,
    eventually,
    free_port,
    free_port_span,
    terminate_connections,
)
from servicekit.testing.kitapps import (
    DEMO_SCHEMA,
    KitSettings,
    create_demo_app,
    create_demo_tables,
    in_process_client,
)
from servicekit.workers import PeriodicWorker


@contextmanager
def records(logger: str) -> Iterator[list[logging.LogRecord]]:
    """The records ``logger`` (and its children) emit inside the block."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler, target = Keep(logging.DEBUG), logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield seen
    finally:
        target.removeHandler(handler)


def store_app(tmp_path: Path, **settings: Any) -> FastAPI:
    """The demo app plus routes that use Redis, the request's session and the driver."""
    app = create_demo_app(KitSettings(service_name="kit-stores", var_dir=tmp_path, **settings))

    @app.get("/v1/hits")
    async def hit() -> dict[str, int]:
        redis = service_state(app).runtime.redis
        assert redis is not None
        return {"hits": int(await redis.incr("hits"))}

    @app.get("/v1/driver/one")
    async def driver_one(session: DbSession) -> dict[str, int]:
        raw = driver(session)
        assert raw is not None
        [row] = await raw.fetch("one", "SELECT 1 AS one")
        return {"one": int(row["one"])}

    @app.get("/v1/broken-sql")
    async def broken_sql(session: DbSession) -> None:
        await session.execute(text("SELECT * FROM no_such_table"))

    return app


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "backing_store_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


@asynccontextmanager
async def pg_app(tmp_path: Path, pg_url: str, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = store_app(tmp_path, database_url=pg_url, **settings)
    await create_demo_tables(app)
    async with in_process_client(app) as client:
        yield client


async def running(database_url: str, statement: str) -> bool:
    """Whether ``statement`` is running on this test's database."""
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        found = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' AND query = $2",
            database_url.rsplit("/", 1)[1],
            statement,
        )
    finally:
        await admin.close()
    return bool(found)


async def test_redis_down_is_a_503_logged_in_one_line_and_the_service_serves_again_when_it_returns(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    app = store_app(tmp_path, redis_url=private_redis.url, redis_timeout_seconds=0.5)
    async with in_process_client(app) as client:
        assert (await client.get("/v1/hits")).json() == {"hits": 1}
        await private_redis.kill()
        with records("servicekit") as logged:
            down = await client.get("/v1/hits")
        assert_unavailable(down)
        [warning] = [r for r in logged if r.levelno >= logging.WARNING]
        assert warning.levelno == logging.WARNING
        assert warning.exc_info is None  # one line, no stack trace
        assert not warning.exc_text
        assert getattr(warning, "correlation_id", None) == down.headers["X-Correlation-ID"]

        await private_redis.start()
        back = await eventually(lambda: client.get("/v1/hits"), until=lambda r: r.status_code == 200)
        assert back.json() == {"hits": 1}  # an empty Redis again


async def test_postgresql_unreachable_is_a_503(tmp_path: Path) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    async with in_process_client(store_app(tmp_path, database_url=nowhere)) as client:
        assert_unavailable(await client.get("/v1/notes/count"))


async def test_a_statement_the_database_refuses_stays_a_500(tmp_path: Path, pg_url: str) -> None:
    async with pg_app(tmp_path, pg_url) as client:
        response = await client.get("/v1/broken-sql")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


async def test_terminated_connections_are_replaced_and_never_answered_500(
    tmp_path: Path, pg_url: str
) -> None:
    async with pg_app(tmp_path, pg_url, database_pool_size=4) as client:
        for path in ("/v1/notes/count", "/v1/driver/one"):
            assert (await client.get(path)).status_code == 200
        assert await terminate_connections(pg_url) >= 1
        answers = [await client.get(path) for path in ("/v1/notes/count", "/v1/driver/one") * 4]
    for answer in answers:
        if answer.status_code != 200:
            assert_unavailable(answer)
    assert [a.status_code for a in answers[-2:]] == [200, 200]


async def test_a_burst_queues_for_a_redis_connection_instead_of_being_refused(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    app = store_app(tmp_path, redis_url=private_redis.url, redis_max_connections=2)
    async with in_process_client(app) as client:
        answers = await asyncio.gather(*(client.get("/v1/hits") for _ in range(100)))
    assert [a.status_code for a in answers] == [200] * 100
    assert sorted(a.json()["hits"] for a in answers) == list(range(1, 101))


async def test_no_free_database_connection_within_the_pool_timeout_is_a_503(
    tmp_path: Path, pg_url: str
) -> None:
    app = store_app(tmp_path, database_url=pg_url, database_pool_size=1, database_pool_timeout_seconds=0.2)
    await create_demo_tables(app)
    async with in_process_client(app) as client:
        async with service_state(app).runtime.database.engine.connect():  # the pool's only connection
            assert_unavailable(await client.get("/v1/notes/count"))
        assert (await client.get("/v1/notes/count")).status_code == 200


# --- the driver's connections ------------------------------------------------------------------------


@pytest.fixture
async def single_connection(pg_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database whose pool has one connection: a connection left mid-operation would be the next one's."""
    database = Database(
        url=pg_url, schema=DEMO_SCHEMA, var_dir=tmp_path, service_name="kit-driver", pool_size=1
    )
    try:
        yield database
    finally:
        await database.dispose()


async def raw(database: Database) -> Any:
    async with database.sessionmaker() as session:
        return driver(session)


async def test_a_statement_cut_short_never_leaves_its_connection_mid_operation(
    single_connection: Database,
) -> None:
    statements = await raw(single_connection)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await statements.fetch("slow", "SELECT pg_sleep(30)")
    row = await statements.fetchrow("one", "SELECT 1 AS one")
    assert row["one"] == 1


async def test_a_statement_whose_connection_is_terminated_leaves_none_behind(
    single_connection: Database, pg_url: str
) -> None:
    statements = await raw(single_connection)
    slow = asyncio.create_task(statements.fetch("slow", "SELECT pg_sleep(30)"))
    await eventually(lambda: running(pg_url, "SELECT pg_sleep(30)"), message="the slow statement runs")
    assert await terminate_connections(pg_url) >= 1
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
        await slow
    row = await statements.fetchrow("one", "SELECT 1 AS one")
    assert row["one"] == 1


# --- rate limits, cache and workers with Redis gone ------------------------------------------------------


async def redis_gone(tmp_path: Path, private_redis: PrivateRedis) -> Any:
    """The service's Redis client (its settings' timeouts) for a private Redis, which is then killed."""
    settings = KitSettings(service_name="kit-redis", var_dir=tmp_path, redis_timeout_seconds=0.5)
    redis = redis_client(private_redis.url, settings)
    assert await redis.ping()
    await private_redis.kill()
    return redis


async def test_a_rate_limit_fails_open_or_closed_as_its_caller_decides(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    registry = CollectorRegistry()
    redis = await redis_gone(tmp_path, private_redis)
    limiter = RateLimiter(redis=redis, namespace="kit", registry=registry)
    with records("servicekit.ratelimit") as logged:
        for _ in range(5):  # far past the limit: nothing is counted while Redis is gone
            await limiter.hit(name="orders", identifier="203.0.113.7", limit="1/minute", fail_open=True)
        with pytest.raises(BackingStoreUnavailableError):
            await limiter.hit(name="codes", identifier="203.0.113.7", limit="1/minute", fail_open=False)
    assert registry.get_sample_value("ratelimit_fail_open_total", {"limit": "orders"}) == 5
    assert [(r.levelno, r.limit) for r in logged] == [  # type: ignore[attr-defined]
        (logging.WARNING, "orders"),  # once, not five times
        (logging.WARNING, "codes"),
    ]

    await private_redis.start()
    await limiter.hit(name="orders", identifier="203.0.113.7", limit="1/minute", fail_open=True)
    with pytest.raises(RateLimitedError):  # counting again
        await limiter.hit(name="orders", identifier="203.0.113.7", limit="1/minute", fail_open=True)
    await redis.aclose()


async def test_the_cache_is_a_miss_while_redis_is_gone(tmp_path: Path, private_redis: PrivateRedis) -> None:
    redis = await redis_gone(tmp_path, private_redis)
    cache = ExpiringCache(redis=redis, namespace="kit", ttl_seconds=60)
    await cache.put("who", "anna")
    assert await cache.get("who") is None
    await cache.forget("who")
    await private_redis.start()
    await cache.put("who", "anna")
    assert await cache.get("who") == "anna"
    await redis.aclose()


async def test_a_worker_waits_a_redis_outage_out_and_carries_on(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    redis = await redis_gone(tmp_path, private_redis)
    passes: list[int] = []

    async def job() -> int:
        passes.append(int(await redis.incr("passes")))
        return 1

    worker = PeriodicWorker(name="kit-worker", job=job, interval_seconds=0.05)
    with records("servicekit.workers") as logged:
        worker.start()
        try:
            await eventually(lambda: asyncio.sleep(0, len(logged)), until=lambda n: n >= 2)
            await private_redis.start()
            await eventually(lambda: asyncio.sleep(0, len(passes)), until=lambda n: n >= 2, within=15)
        finally:
            await worker.stop()
    outage = [r for r in logged if r.getMessage().startswith("worker pass met a backing-store outage")]
    assert len(outage) >= 2
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in logged)
    await redis.aclose()


async def test_a_write_that_must_not_be_lost_waits_a_short_outage_out() -> None:
    """The record that an email went out is written again once the database is back, not dropped (a
    dropped record would send the email a second time)."""
    tries: list[int] = []

    async def write() -> str:
        tries.append(len(tries))
        if len(tries) < 3:
            raise sa_exc.DisconnectionError("connection was terminated")
        return "recorded"

    assert await outlasting_outages(write, within=5.0, what="recording a delivery") == "recorded"
    assert len(tries) == 3


async def test_a_write_gives_up_after_its_window_and_never_retries_a_refused_statement() -> None:
    refused: list[int] = []

    async def constraint() -> None:
        refused.append(1)
        raise sa_exc.IntegrityError("INSERT …", {}, Exception("duplicate key"))

    with pytest.raises(sa_exc.IntegrityError):
        await outlasting_outages(constraint, within=5.0, what="recording a delivery")
    assert refused == [1]

    async def down() -> None:
        raise sa_exc.DisconnectionError("connection refused")

    with pytest.raises(sa_exc.DisconnectionError):
        await outlasting_outages(down, within=0.3, what="recording a delivery")


def test_a_test_server_port_lies_outside_the_ephemeral_range_whatever_its_bounds() -> None:
    """Below the range as usual; above it when the range starts near 10000 (a restarted stand-in must find
    its port still free); the kernel's pick when neither side has room."""
    assert free_port_span((32768, 60999)) == (10000, 32768)
    assert free_port_span((10500, 60999)) == (61000, 65536)  # 500 ports below: above instead
    assert free_port_span((1024, 65000)) is None
    assert 10000 <= free_port() < 65536
