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

The helper classes they hand out (``OrderApi``, ``ApiKeys``, ...) are in ``order_api.testing``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from order_api.customers.models import Customer
from order_api.customers.service import find_or_create_customer
from order_api.db import SCHEMA
from order_api.main import create_app
from order_api.protection import DataProtection
from order_api.settings import Settings
from order_api.testing import (
    TEST_BLIND_INDEX_KEY,
    TEST_DATA_KEY_ID,
    TEST_DATA_KEYS,
    UNREACHABLE_PEER,
    ApiKeys,
    CustomerFactory,
    OrderApi,
    OrderApiRunner,
    SettingsFactory,
    StandInReceiver,
    TwoRoleDatabase,
)
from servicekit.apikeys import mint_key
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


@pytest.fixture
async def two_role_database() -> AsyncIterator[TwoRoleDatabase]:
    async with (
        runtime_role("order_api_rt") as role,
        migrated_database("order-api", prefix="order_api_roles", runtime_role=role.name) as url,
    ):
        yield TwoRoleDatabase(owner_url=url, runtime_url=role.url_for(url), runtime_role=role.name)


@pytest.fixture(scope="session")
def api_keys() -> ApiKeys:
    return ApiKeys(admin=mint_key("adm"), wallet_pool=mint_key("wp"), telegram_gateway=mint_key("tg"))


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


@pytest.fixture
def make_customer(db_session: AsyncSession, protection: DataProtection) -> CustomerFactory:
    """``await make_customer(email=None, locale="en")``: a customer in ``db_session``."""

    async def make(email: str | None = None, *, locale: str = "en") -> Customer:
        address = email or f"customer.{uuid.uuid4().hex[:10]}@example.com"
        return await find_or_create_customer(
            session=db_session, protection=protection, email=address, locale=locale
        )

    return make


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
