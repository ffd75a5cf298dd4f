"""Every input bounded: an id beyond the id columns and a malformed ``order.closed`` are 422 problems naming the
field, never 500s; and no input is a 5xx: every route fuzzed from the OpenAPI document, with valid keys and
without. Both on PostgreSQL and on the embedded SQLite default."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import resolve_database_url, utcnow
from servicekit.fuzzing import assert_no_server_errors
from servicekit.migrations import upgrade
from servicekit.openapi import documents_of
from servicekit.testing import running_app, service_dir
from wallet_pool.main import create_app
from wallet_pool.testing import KEYS, PoolApi, RunningApp, make_settings

CALLERS = {
    "admin": {"Authorization": f"Bearer {KEYS.admin}"},
    "reader": {"Authorization": f"Bearer {KEYS.reader}"},
    "anonymous": {},
}
MAX_EXAMPLES = 30


@pytest.fixture(params=["postgresql", "sqlite"])
async def pool(
    request: pytest.FixtureRequest, pool_app: RunningApp, session: AsyncSession, tmp_path: Path
) -> AsyncIterator[PoolApi]:
    """wallet-pool on PostgreSQL (the test's rolled-back session) and on the embedded SQLite default."""
    if request.param == "postgresql":
        yield PoolApi(pool_app.client, app=pool_app.app)
        return
    url = resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool")
    await asyncio.to_thread(upgrade, service_dir("wallet-pool"), url=url)
    app = create_app(make_settings(None, var_dir=tmp_path))
    async with running_app(app) as client:
        yield PoolApi(client, app=app)


@pytest.mark.parametrize("wallet_id", ["9996991461559242220549588385792", "592829130637", "2147483648", "0"])
async def test_a_wallet_id_beyond_the_id_column_is_a_422(pool: PoolApi, wallet_id: str) -> None:
    for action in ("disable", "enable"):
        answer = await pool.client.post(f"/v1/wallets/{wallet_id}/{action}", headers=pool.headers)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["wallet_id"]


async def test_a_malformed_order_closed_is_a_422(pool: PoolApi) -> None:
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "order.closed",
        "source": "order-api",
        "occurred_at": utcnow().isoformat(),
        "payload": {"order_id": ["not", "an", "id"]},
    }
    answer = await pool.client.post("/v1/events", json=envelope, headers=pool.headers)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["payload.order_id"]
    too_long = {**envelope, "payload": {"order_id": "o" * 65}}
    answer = await pool.client.post("/v1/events", json=too_long, headers=pool.headers)
    assert [e["field"] for e in answer.json()["errors"]] == ["payload.order_id"]


async def test_no_input_is_a_server_error_on_postgresql(pool_app: RunningApp, session: AsyncSession) -> None:
    await PoolApi(pool_app.client).stock("BTC", 2)
    await assert_no_server_errors(
        pool_app.client, documents_of(pool_app.app).complete(), callers=CALLERS, max_examples=MAX_EXAMPLES
    )


async def test_no_input_is_a_server_error_on_sqlite(tmp_path: Path) -> None:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool")
    await asyncio.to_thread(upgrade, service_dir("wallet-pool"), url=url)
    app = create_app(make_settings(None, var_dir=tmp_path))
    async with running_app(app) as client:
        await PoolApi(client).stock("BTC", 2)
        await assert_no_server_errors(
            client, documents_of(app).complete(), callers=CALLERS, max_examples=MAX_EXAMPLES
        )
