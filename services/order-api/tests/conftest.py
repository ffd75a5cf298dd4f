"""Shared fixtures of order-api's tests.

- ``database_url``: one PostgreSQL database per test session, migrated to head; ``engine`` on it;
- ``db_session``: a session in an outer transaction rolled back after the test (commits are savepoints);
- ``own_database_url``: a migrated database of the test's own, for tests that commit for real (races,
  the outbox relay);
- ``two_role_database``: a migrated database of the test's own with a runtime role of its own, as deployed:
  the migrations ran as the schema's owner and granted the runtime role its privileges;
- ``make_settings(**overrides)``: order-api settings for tests (fixed data keys, var/ under tmp_path);
- ``order_api(session=..., **overrides)``: the app, its lifespan running, with an in-process client;
  ``api`` is the common case of it on ``db_session``;
- ``protection``, ``make_customer``, ``unique_email``, ``api_keys``;
- ``notifier_stand_in``: a tiny HTTP receiver of ``POST /v1/events`` on loopback that records envelopes.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from order_api.customers.models import Customer
from order_api.customers.service import find_or_create_customer
from order_api.db import SCHEMA
from order_api.main import create_app
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.db import create_engine
from servicekit.settings import PeerSettings
from servicekit.testing import (
    TEST_EVENT_KEY_ID,
    TEST_EVENT_KEYS,
    event_receiver_stand_in,
    isolated_session,
    migrated_database,
    running_app,
    runtime_role,
    serve_stand_in,
    use_session,
)


def _test_key(label: str) -> str:
    """A fixed 32-byte key per label: tests are repeatable, and no dev secrets file is written."""
    return base64.b64encode(hashlib.sha256(f"order-api tests: {label}".encode()).digest()).decode()


TEST_DATA_KEY_ID = "test1"
TEST_DATA_KEYS = {TEST_DATA_KEY_ID: _test_key("data key 1")}
TEST_BLIND_INDEX_KEY = _test_key("blind index")
UNREACHABLE_PEER = "http://127.0.0.1:9"
"""A peer URL nothing listens on (the discard port): relays and clients fail fast, never hang."""


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("order-api", prefix="order_api_test") as url:
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with isolated_session(engine) as session:
        yield session


@pytest.fixture
async def own_database_url() -> AsyncIterator[str]:
    async with migrated_database("order-api", prefix="order_api_own") as url:
        yield url


@dataclass(frozen=True)
class TwoRoleDatabase:
    """One database, two ways in: as the owner of the schema (who ran the migrations), and as the runtime role
    the service runs as."""

    owner_url: str
    runtime_url: str
    runtime_role: str


@pytest.fixture
async def two_role_database() -> AsyncIterator[TwoRoleDatabase]:
    async with (
        runtime_role("order_api_rt") as role,
        migrated_database("order-api", prefix="order_api_roles", runtime_role=role.name) as url,
    ):
        yield TwoRoleDatabase(owner_url=url, runtime_url=role.url_for(url), runtime_role=role.name)


@dataclass(frozen=True)
class ApiKeys:
    """Minted API keys the test app accepts, by caller."""

    admin: str
    wallet_pool: str
    telegram_gateway: str

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="admin", hash=hash_key(self.admin), scopes=["admin"]),
            ApiKeyEntry(name="wallet-pool", hash=hash_key(self.wallet_pool), scopes=["events:publish"]),
            ApiKeyEntry(
                name="telegram-gateway",
                hash=hash_key(self.telegram_gateway),
                scopes=["orders:act-as-operator"],
            ),
        ]


@pytest.fixture(scope="session")
def api_keys() -> ApiKeys:
    return ApiKeys(admin=mint_key("adm"), wallet_pool=mint_key("wp"), telegram_gateway=mint_key("tg"))


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


@pytest.fixture
def make_settings(database_url: str, api_keys: ApiKeys, tmp_path: Path) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "environment": "test",
            "database_url": database_url,
            "var_dir": tmp_path / "var",
            "api_keys": api_keys.entries(),
            "data_keys": {key_id: SecretStr(key) for key_id, key in TEST_DATA_KEYS.items()},
            "data_key_current": TEST_DATA_KEY_ID,
            "blind_index_key": SecretStr(TEST_BLIND_INDEX_KEY),
            "event_keys": {key_id: SecretStr(key) for key_id, key in TEST_EVENT_KEYS.items()},
            "event_key_current": TEST_EVENT_KEY_ID,
            "wallet_pool": PeerSettings(url=UNREACHABLE_PEER, timeout_seconds=1.0),
            "notifier": PeerSettings(url=UNREACHABLE_PEER, timeout_seconds=1.0),
            "trace_database": False,
            "log_json": False,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def protection(make_settings: SettingsFactory) -> DataProtection:
    return DataProtection.from_settings(make_settings())


@pytest.fixture
def unique_email() -> str:
    """An email no other test uses (mixed case on purpose: lookups must not care)."""
    return f"Alice.{uuid.uuid4().hex[:10]}@Example.com"


CustomerFactory = Callable[..., Awaitable[Customer]]


@pytest.fixture
def make_customer(db_session: AsyncSession, protection: DataProtection) -> CustomerFactory:
    """``await make_customer(email=None, locale="en")``: a customer in ``db_session``."""

    async def make(email: str | None = None, *, locale: str = "en") -> Customer:
        address = email or f"customer.{uuid.uuid4().hex[:10]}@example.com"
        return await find_or_create_customer(
            session=db_session, protection=protection, email=address, locale=locale
        )

    return make


@dataclass
class OrderApi:
    """order-api running in process: its app, settings and a client for it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings


class OrderApiRunner(Protocol):
    def __call__(
        self, *, session: AsyncSession | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[OrderApi]: ...


@pytest.fixture
def order_api(make_settings: SettingsFactory) -> OrderApiRunner:
    """``async with order_api(session=db_session, **settings_overrides) as running:`` — the app with its
    lifespan (workers included) running; with ``session``, every request uses that isolated session."""

    @asynccontextmanager
    async def run(*, session: AsyncSession | None = None, **overrides: Any) -> AsyncIterator[OrderApi]:
        settings = make_settings(**overrides)
        app = create_app(settings)
        if session is not None:
            use_session(app, session)
        async with running_app(app) as client:
            yield OrderApi(app=app, client=client, settings=settings)

    return run


@pytest.fixture
async def api(order_api: OrderApiRunner, db_session: AsyncSession) -> AsyncIterator[OrderApi]:
    """order-api on ``db_session``: whatever a test does is rolled back afterwards."""
    async with order_api(session=db_session) as running:
        yield running


@dataclass
class StandInReceiver:
    """What a stand-in peer received on ``POST /v1/events``."""

    url: str = ""
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e.get("type") == event_type]


@pytest.fixture
async def notifier_stand_in() -> AsyncIterator[StandInReceiver]:
    """A stand-in for notifier's event receiver on a loopback port; it accepts everything."""
    receiver = StandInReceiver()

    def record(envelope: dict[str, Any], request: web.Request) -> None:
        receiver.envelopes.append(envelope)
        receiver.authorizations.append(request.headers.get("Authorization"))

    app = event_receiver_stand_in(record)
    async with serve_stand_in(app) as url:
        receiver.url = url
        yield receiver
