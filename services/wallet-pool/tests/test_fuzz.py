"""No input is a 5xx: every public route fuzzed from the OpenAPI document, with valid keys and without, on
PostgreSQL and on the embedded SQLite default."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pooltest import KEYS, PoolApi, RunningApp, make_settings
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import resolve_database_url
from servicekit.fuzzing import assert_no_server_errors
from servicekit.migrations import upgrade
from servicekit.testing import running_app, service_dir
from wallet_pool.main import create_app

CALLERS = {
    "admin": {"Authorization": f"Bearer {KEYS.admin}"},
    "reader": {"Authorization": f"Bearer {KEYS.reader}"},
    "anonymous": {},
}
MAX_EXAMPLES = 12


async def test_no_input_is_a_server_error_on_postgresql(pool_app: RunningApp, session: AsyncSession) -> None:
    await PoolApi(pool_app.client).stock("BTC", 2)
    await assert_no_server_errors(
        pool_app.client, pool_app.app.openapi(), callers=CALLERS, max_examples=MAX_EXAMPLES
    )


async def test_no_input_is_a_server_error_on_sqlite(tmp_path: Path) -> None:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool")
    await asyncio.to_thread(upgrade, service_dir("wallet-pool"), url=url)
    app = create_app(make_settings(None, var_dir=tmp_path))
    async with running_app(app) as client:
        await PoolApi(client).stock("BTC", 2)
        await assert_no_server_errors(client, app.openapi(), callers=CALLERS, max_examples=MAX_EXAMPLES)
