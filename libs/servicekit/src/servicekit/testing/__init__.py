"""pytest plugin for the services' tests (loaded with ``-p servicekit.testing``).

- a fresh PostgreSQL database per test session and per service, migrated with Alembic, dropped at the end;
  :func:`migrated_database` copies one template per set of services (migrated from scratch once per process)
  instead of running the histories again for every test that needs a database of its own;
  :func:`runtime_role`: a login role of the test's own for a service to run as (granted by the migrations);
- :func:`isolated_session`: a session inside an outer transaction that is rolled back after the test, so code
  that commits (it commits a savepoint) leaves nothing behind;
- real Redis (a database index of its own, flushed around each test that asks for it), and
  :class:`PrivateRedis`, a ``redis-server`` of the test's own that it may kill and restart;
- :class:`ServiceProcess`: a service as a real uvicorn process on a free loopback port, awaited until ready,
  its JSON log lines readable by the test;
- :func:`eventually`: await a condition instead of sleeping;
- fixed test keys (:func:`fixed_key`, :data:`TEST_EVENT_KEYS`): repeatable tests that write no dev key files,
  and the one event key ring a test publisher and a test receiver share.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from servicekit.apikeys import ApiKeyEntry
from servicekit.app import request_session
from servicekit.db import resolve_database_url, rolled_back_on_error
from servicekit.migrations import upgrade
from servicekit.sealing import Keyring
from servicekit.server import UVICORN_OPTIONS

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[5]
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


REDIS_DEFAULT_LAST_INDEX = 15
"""A Redis server has databases 0 to 15 unless configured otherwise."""


def _redis_test_url() -> str:
    """``TEST_REDIS_URL`` (database index 13 by default); under pytest-xdist, worker ``gwN`` takes the index N
    places further, so that parallel workers never flush each other's keys."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    index = int(parts.path.lstrip("/") or 0) + int(worker.removeprefix("gw"))
    if index > REDIS_DEFAULT_LAST_INDEX:
        raise RuntimeError(
            f"pytest-xdist worker {worker} would use Redis database {index}, past a default Redis's last "
            f"({REDIS_DEFAULT_LAST_INDEX}): lower TEST_WORKERS or the index of TEST_REDIS_URL"
        )
    return urlunsplit(parts._replace(path=f"/{index}"))


REDIS_TEST_URL = _redis_test_url()


def fixed_key(label: str) -> str:
    """A fixed base64 32-byte key per label: tests are repeatable, and no dev secrets file is written."""
    return base64.b64encode(hashlib.sha256(f"exchange desk tests: {label}".encode()).digest()).decode()


TEST_EVENT_KEY_ID = "test-events1"
TEST_EVENT_KEYS = {TEST_EVENT_KEY_ID: fixed_key("event key 1")}
"""The event key ring of test apps (order-api's ``event_keys`` and the notifier's are the same ring)."""
TEST_EVENT_KEYRING = Keyring(
    keys={key_id: base64.b64decode(key) for key_id, key in TEST_EVENT_KEYS.items()},
    current_key_id=TEST_EVENT_KEY_ID,
    name="event",
)


def in_process_settings(
    *, database_url: str | None, var_dir: Path, api_keys: list[ApiKeyEntry]
) -> dict[str, Any]:
    """The settings every service's in-process test app starts from: its storage, its API keys, plain logs at
    WARNING and no per-query traces."""
    return {
        "database_url": database_url,
        "var_dir": var_dir,
        "api_keys": api_keys,
        "log_json": False,
        "log_level": "WARNING",
        "trace_database": False,
    }


def service_dir(name: str) -> Path:
    """``services/<name>`` of this checkout."""
    return ROOT / "services" / name


def async_url(database: str) -> str:
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{database}"


async def create_database(prefix: str = "desk_test") -> str:
    """Create an empty, uniquely named database; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


_TEMPLATES: dict[tuple[str, ...], str] = {}
"""Per set of services, a database this process migrated from scratch once: the template of later copies."""


async def _migrate(name: str, services: tuple[str, ...], runtime_role: str | None) -> None:
    url = async_url(name)
    for service in services:
        await asyncio.to_thread(upgrade, service_dir(service), url=url, runtime_role=runtime_role)


async def _template(services: tuple[str, ...]) -> str:
    """The template database of ``services`` (made at the first call): their whole histories run on an empty
    database, with no runtime role (roles are per test)."""
    if services not in _TEMPLATES:
        name = await create_database("desk_template")
        try:
            await _migrate(name, services, None)
        except BaseException:
            await drop_database(name)
            raise
        if services in _TEMPLATES:  # made meanwhile by a concurrent caller
            await drop_database(name)
        else:
            _TEMPLATES[services] = name
    return _TEMPLATES[services]


def drop_templates() -> None:
    """Drop the template databases this process made (at the end of the test session)."""
    names = list(_TEMPLATES.values())
    _TEMPLATES.clear()

    async def drop() -> None:
        for name in names:
            await drop_database(name)

    if names:
        asyncio.run(drop())


def pytest_sessionfinish(session: pytest.Session) -> None:
    drop_templates()


@asynccontextmanager
async def migrated_database(
    *services: str, prefix: str = "desk_test", runtime_role: str | None = None, from_scratch: bool = False
) -> AsyncIterator[str]:
    """A fresh database with the given services' migrations applied (granting ``runtime_role`` its
    privileges, see :func:`runtime_role`); yields its asyncpg URL.

    It is a copy (``CREATE DATABASE ... TEMPLATE``, a fraction of a second) of a database the same histories
    were run on from scratch once in this process; with ``runtime_role``, ``alembic upgrade head`` then runs on
    the copy, as on every deployment, and grants the role its privileges. ``from_scratch``: run the histories
    on an empty database instead (tests of the migrations themselves)."""
    if from_scratch:
        name = await create_database(prefix)
    else:
        template = await _template(services)
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        await _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        if from_scratch or runtime_role is not None:
            await _migrate(name, services, runtime_role)
        yield async_url(name)
    finally:
        await drop_database(name)


async def terminate_connections(database_url: str) -> int:
    """``pg_terminate_backend`` on every connection to the database of ``database_url`` (a test's own),
    as a database failover or an operator would; returns how many were terminated."""
    name = make_url(database_url).database
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await connection.close()
    return len(rows)


async def migrate_embedded(var_dir: Path, *services: str) -> None:
    """Migrate the given services' embedded SQLite databases in ``var_dir`` (as ``make migrate`` does)."""
    for service in services:
        url = resolve_database_url(None, var_dir=var_dir, service_name=service)
        await asyncio.to_thread(upgrade, service_dir(service), url=url)


@dataclass(frozen=True)
class RuntimeRole:
    """A login role made for one test: its name, and ``url_for(database_url)`` connects as it."""

    name: str
    password: str

    def url_for(self, database_url: str) -> str:
        return (
            make_url(database_url)
            .set(username=self.name, password=self.password)
            .render_as_string(hide_password=False)
        )


@asynccontextmanager
async def runtime_role(prefix: str = "desk_runtime") -> AsyncIterator[RuntimeRole]:
    """A uniquely named login role (roles are cluster-wide, databases are not), dropped at the end: drop the
    databases it has rights in first (``migrated_database`` nested inside this does)."""
    role = RuntimeRole(name=f"{prefix}_{uuid.uuid4().hex[:10]}", password=uuid.uuid4().hex)
    await _admin_execute(f"CREATE ROLE \"{role.name}\" LOGIN PASSWORD '{role.password}'")
    try:
        yield role
    finally:
        await _admin_execute(f'DROP ROLE IF EXISTS "{role.name}"')


async def _admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def isolated_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session whose every commit is a savepoint inside one outer transaction, rolled back at the end."""
    async with engine.connect() as connection:
        outer = await connection.begin()
        session = AsyncSession(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            if outer.is_active:
                await outer.rollback()


def use_session(app: FastAPI, session: AsyncSession) -> None:
    """Make ``app``'s routes use ``session`` (from :func:`isolated_session`) instead of their own."""

    async def scoped() -> AsyncIterator[AsyncSession]:
        async with rolled_back_on_error(session):
            yield session
        await session.commit()

    app.dependency_overrides[request_session] = scoped


@asynccontextmanager
async def running_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and give an in-process client for it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    within: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not reached",
) -> T:
    """Poll ``probe`` until ``until(result)`` holds; fail the test with ``message`` after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:  # a probe that hangs fails the test here, with its message, not at the suite's timeout
            async with asyncio.timeout(max(deadline - time.monotonic(), 0) + within):
                result = await probe()
        except TimeoutError:
            raise AssertionError(f"{message}: the probe did not answer within {within}s") from None
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {within}s (last: {result!r})")
        await asyncio.sleep(interval)


@asynccontextmanager
async def serve_stand_in(app: web.Application) -> AsyncIterator[str]:
    """Serve a stand-in for a peer service (a small aiohttp app) on a free loopback port; yields its URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def event_receiver_stand_in(on_event: Callable[[dict[str, Any], web.Request], None]) -> web.Application:
    """A stand-in for a peer's event receiver (``POST /v1/events`` and ``POST /v1/events/batch``, as
    ``servicekit.events`` serves them) that accepts every event: ``on_event`` sees each envelope with the request
    that brought it, and each is acknowledged as processed."""

    def accept(envelope: dict[str, Any], request: web.Request) -> dict[str, str]:
        on_event(envelope, request)
        return {"event_id": envelope["id"], "status": "processed"}

    async def receive(request: web.Request) -> web.Response:
        return web.json_response(accept(await request.json(), request))

    async def receive_batch(request: web.Request) -> web.Response:
        envelopes = (await request.json())["events"]
        return web.json_response({"receipts": [accept(envelope, request) for envelope in envelopes]})

    app = web.Application()
    app.router.add_post("/v1/events", receive)
    app.router.add_post("/v1/events/batch", receive_batch)
    return app


def _ephemeral_ports() -> tuple[int, int]:
    try:
        first, last = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[:2]
        return int(first), int(last)
    except (OSError, ValueError):
        return 32768, 60999


def free_port_span(ephemeral: tuple[int, int]) -> tuple[int, int] | None:
    """Where :func:`free_port` looks (``[first, last)``): from 10000 up to the ephemeral range, else above it
    when fewer than 1000 ports lie below it; ``None`` when neither side has 1000 (the kernel then picks)."""
    start, end = ephemeral
    if start - 10000 >= 1000:
        return 10000, start
    if 65535 - end >= 1000:
        return end + 1, 65536
    return None


def free_port() -> int:
    """A free loopback port outside the kernel's ephemeral range. A test server that is killed and started
    again on its port (an outage) must find it still free: an ephemeral port may meanwhile become the local
    end of any process's outgoing connection, or of a client connecting to itself (TCP self-connect), and
    the restarted server would fail to bind or a client would hang talking to the wrong peer."""
    span = free_port_span(_ephemeral_ports())
    if span is None:  # an ephemeral range covering (nearly) everything: take what the kernel gives
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
            return port
    first, last = span
    for _ in range(200):
        port = random.randrange(first, last)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port between {first} and {last}")


class ServiceProcess:
    """One service running as a real uvicorn process on loopback."""

    def __init__(self, *, app: str, env: Mapping[str, str], log_path: Path, port: int | None = None) -> None:
        self.app = app
        self.port = port or free_port()
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, ready_within: float = 90.0, probe_timeout: float = 2.0) -> ServiceProcess:
        """Start and wait until ``/health/ready`` answers 200, each probe waiting ``probe_timeout`` at most. The
        wait is generous: it only matters when a loaded machine imports slowly, and a process that never gets
        ready still fails the test with its log."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603 (returns at once; fixed argv)
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.app,
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
                *UVICORN_OPTIONS,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        log.close()
        deadline = time.monotonic() + ready_within
        async with httpx.AsyncClient(timeout=probe_timeout) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.app} exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/health/ready")).status_code == 200:
                        return self
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.app} not ready after {ready_within}s:\n{self.log_text()[-3000:]}"
                    )
                await asyncio.sleep(0.1)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    async def stop(self, *, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL to simulate a crash) and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            await asyncio.to_thread(self.process.wait, 15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 5)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[list[ServiceProcess]]:
    """A list to append started :class:`ServiceProcess` objects to; all are stopped after the test."""
    started: list[ServiceProcess] = []
    yield started
    for process in reversed(started):
        await process.stop()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real Redis database index of its own, flushed before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_TEST_URL)
    client.flushdb()
    try:
        yield REDIS_TEST_URL
    finally:
        client.flushdb()
        client.close()


class PrivateRedis:
    """A ``redis-server`` of the test's own on a free loopback port, without persistence: a test may kill it
    (a Redis outage) and start it again (empty) without disturbing the shared Redis."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self, *, ready_within: float = 10.0) -> PrivateRedis:
        """Start it (again, on the same port) and wait until it answers ``PING``."""
        import redis.asyncio

        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (the tests need it on PATH)")
        self.process = subprocess.Popen(  # noqa: ASYNC220, S603 (returns at once; fixed argv)
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.asyncio.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        process = self.process

        async def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the private redis-server on port {self.port} exited ({process.returncode})"
                )
            try:
                return bool(await client.ping())
            except redis.RedisError:
                return False

        try:
            await eventually(answers, within=ready_within, message="the private redis-server answers")
        finally:
            await client.aclose()
        return self

    async def kill(self) -> None:
        """``kill -9``: gone at once, connections reset."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            await asyncio.to_thread(self.process.wait, 10)


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A :class:`PrivateRedis`, started; killed after the test."""
    server = await PrivateRedis().start()
    try:
        yield server
    finally:
        await server.kill()


async def check_migrations(service: str, *, schema: str) -> list[str]:
    """Upgrade a fresh PostgreSQL database to head with ``service``'s history, run ``alembic check``
    (raises when models and migrations disagree), and return the tables created OUTSIDE ``schema``."""
    from alembic import command

    from servicekit.migrations import alembic_config

    async with migrated_database(service, prefix="desk_migrations", from_scratch=True) as url:
        await asyncio.to_thread(command.check, alembic_config(service_dir(service), url=url))
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            rows = await connection.fetch(
                "SELECT table_schema || '.' || table_name AS name FROM information_schema.tables "
                "WHERE table_schema NOT IN ($1, 'pg_catalog', 'information_schema')",
                schema,
            )
            own = await connection.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                schema,
                "alembic_version",
            )
        finally:
            await connection.close()
    if own != 1:
        raise AssertionError(f"alembic_version is not in schema {schema}")
    return [row["name"] for row in rows]


def settings_from_scratch(monkeypatch: pytest.MonkeyPatch, directory: Path, prefix: str) -> None:
    """Read a service's settings as if nothing were configured: from ``directory`` (no stray ``.env``) and
    without the caller's ``prefix`` variables (``ORDER_API_``...)."""
    monkeypatch.chdir(directory)
    for variable in [name for name in os.environ if name.startswith(prefix)]:
        monkeypatch.delenv(variable)


@asynccontextmanager
async def served_app(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` (its lifespan included) over real HTTP on a free loopback port, in this process, with the
    services' own protocol; yields its URL. For what an in-process client cannot show: streamed responses
    read as they come, a client that goes away."""
    import uvicorn

    from servicekit.server import HttpProtocol

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        http=HttpProtocol,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server, task), within=10, message="the app serves")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        await task


async def _started(server: Any, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # a server that could not start: its error
    return bool(server.started)


@dataclass
class ServerSentEvent:
    """One event of a ``text/event-stream``, as a client's parser sees it."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class EventStreamReader:
    """Reads a streamed ``text/event-stream`` response as ``EventSource`` does: the events (blocks with data),
    the reconnection time the server asked for in ``retry``, and the comment lines (heartbeats) in
    ``comments``. Lines are read by a task of its own, so a wait that times out loses nothing."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self.retry: int | None = None
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                self._lines.put_nowait(line)
        finally:
            self._lines.put_nowait(None)

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self._reader

    async def next(self, *, within: float = 5.0) -> ServerSentEvent:
        """The next event; ``TimeoutError`` when none comes ``within`` seconds, ``EOFError`` when the stream
        ends first."""
        found = ServerSentEvent()
        data: list[str] = []
        async with asyncio.timeout(within):
            while (line := await self._lines.get()) is not None:
                if not line:
                    if data:
                        found.data = "\n".join(data)
                        return found
                    found = ServerSentEvent()  # a block without data dispatches nothing
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if not name:
                    self.comments.append(value)
                elif name == "data":
                    data.append(value)
                elif name == "event":
                    found.event = value
                elif name == "id":
                    found.id = value
                elif name == "retry":
                    self.retry = found.retry = int(value)
        self._lines.put_nowait(None)  # the end stays the end for the next call
        raise EOFError("the stream ended")

    async def ends(self, *, within: float = 5.0) -> None:
        """Wait for the server to end the stream, failing on any event before the end."""
        try:
            event = await self.next(within=within)
        except EOFError:
            return
        raise AssertionError(f"an event where the stream should end: {event}")


def metric_samples(exposition: str) -> dict[str, float]:
    """Every sample of a ``/metrics`` page by name and labels, as Prometheus would write them:
    ``orders_open{status="queued"}``, ``order_take_seconds_bucket{le="60.0"}``, ``order_take_seconds_count``."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{name}="{value}"' for name, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples
