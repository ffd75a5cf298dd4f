"""Fixtures of telegram-gateway's tests.

- a PostgreSQL database migrated once per session, emptied before each test (the gateway commits for real:
  its bot handlers open their own sessions);
- the fake Telegram Bot API, and stand-ins for order-api and wallet-pool on loopback;
- ``launch``: the gateway served by uvicorn in this process (Telegram must reach its webhook), pointed at
  all three, in webhook mode unless told otherwise, and registered with the fake Bot API.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from servicekit.db import Database
from servicekit.settings import PeerSettings
from servicekit.testing import free_port, migrated_database
from telegram_gateway.db import SCHEMA
from telegram_gateway.main import create_app
from telegram_gateway.testing import FakeBotApi, make_settings
from telegram_gateway.testing.harness import (
    GATEWAY_KEY,
    Desk,
    Gateway,
    Launch,
    StandInOrderApi,
    StandInWalletPool,
    open_desk,
    registered,
    serve,
)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("telegram-gateway", prefix="tg_test") as url:
        yield url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The test database, empty."""
    db = Database(
        url=database_url, schema=SCHEMA, var_dir=Path(tempfile.gettempdir()), service_name="telegram-gateway"
    )
    async with db.engine.begin() as connection:
        await connection.execute(
            text(
                "TRUNCATE posted_message, order_snapshot, message_delivery, completion_draft RESTART IDENTITY"
            )
        )
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as fake:
        yield fake


@pytest.fixture
async def order_api() -> AsyncIterator[StandInOrderApi]:
    async with StandInOrderApi() as stand_in:
        yield stand_in


@pytest.fixture
def order(order_api: StandInOrderApi) -> dict[str, Any]:
    """An order the stand-in order-api knows (a new one, awaiting its deposit)."""
    return order_api.add_order()


@pytest.fixture
async def wallet_pool() -> AsyncIterator[StandInWalletPool]:
    async with StandInWalletPool() as stand_in:
        yield stand_in


@pytest.fixture
def launch(
    database: Database,
    database_url: str,
    tmp_path: Path,
    fake_bot_api: FakeBotApi,
    order_api: StandInOrderApi,
    wallet_pool: StandInWalletPool,
) -> Launch:
    """``async with launch(**settings) as gateway``: the gateway, running and registered with the fake Bot
    API (unless ``bot_token=None``). Webhook mode by default; ``mode="polling"`` polls."""

    @contextlib.asynccontextmanager
    async def running(*, fake: FakeBotApi | None = fake_bot_api, **overrides: Any) -> AsyncIterator[Gateway]:
        port = free_port()
        values: dict[str, Any] = {
            "order_api": PeerSettings(url=order_api.url, api_key=SecretStr(GATEWAY_KEY), timeout_seconds=2.0),
            "wallet_pool": PeerSettings(
                url=wallet_pool.url, api_key=SecretStr(GATEWAY_KEY), timeout_seconds=2.0
            ),
            **overrides,
        }
        if values.get("mode", "webhook") == "webhook":
            values.setdefault("webhook_url", f"http://127.0.0.1:{port}/telegram/webhook")
        values.setdefault("database_url", database_url)
        values.setdefault("var_dir", tmp_path)
        settings = make_settings(fake=fake, **values)
        async with serve(create_app(settings), port) as gateway:
            if fake is not None and settings.bot_token is not None:
                await registered(fake, gateway)
            yield gateway

    return running


@pytest.fixture
async def desk(launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi) -> AsyncIterator[Desk]:
    async with open_desk(launch, fake_bot_api, order_api) as opened:
        yield opened
