"""Every input bounded: deeply nested JSON on the webhook and NUL characters in a message are 422 problems,
never 500s, on PostgreSQL and on the embedded SQLite default; and the whole API fuzzed answers no 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from servicekit.db import resolve_database_url
from servicekit.fuzzing import DeepJson, assert_no_server_errors
from servicekit.migrations import upgrade
from servicekit.openapi import documents_of
from servicekit.state import service_state
from servicekit.testing import service_dir
from telegram_gateway.testing import KEYS, WEBHOOK_SECRET
from telegram_gateway.testing.harness import Gateway, Launch, StandInOrderApi, order_message

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def fields_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(request: pytest.FixtureRequest, launch: Launch, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway in webhook mode on PostgreSQL and on the embedded SQLite default."""
    if request.param == "postgresql":
        async with launch() as running:
            yield running
        return
    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="telegram-gateway")
    await asyncio.to_thread(upgrade, service_dir("telegram-gateway"), url=url)
    async with launch(database_url=None, var_dir=var_dir) as running:
        assert service_state(running.app).runtime.database.engine.dialect.name == "sqlite"
        yield running


async def test_deeply_nested_json_on_the_webhook_is_refused_before_it_is_parsed(gateway: Gateway) -> None:
    answer = await gateway.client.post(
        "/telegram/webhook",
        content=DeepJson(10_000).encode(),
        headers={"Content-Type": "application/json", SECRET_HEADER: WEBHOOK_SECRET},
    )
    assert fields_of(answer) == ["body"]
    assert answer.json()["code"] == "json_too_deep"


async def test_nul_in_a_message_is_refused_naming_the_field(
    gateway: Gateway, order_api: StandInOrderApi
) -> None:
    body = order_message(order_api.add_order(), event="order.created", note="a\x00b")
    answer = await gateway.post_message(body)
    assert fields_of(answer) == ["note"]
    assert answer.json()["code"] == "forbidden_character"


async def test_no_input_to_any_route_is_a_server_error(gateway: Gateway) -> None:
    callers = {
        "anonymous": {},
        "notifier": {"Authorization": f"Bearer {KEYS.notifier}"},
        "other service": {"Authorization": f"Bearer {KEYS.other}"},
        "telegram": {SECRET_HEADER: WEBHOOK_SECRET},
    }
    await assert_no_server_errors(
        gateway.client, documents_of(gateway.app).complete(), callers=callers, max_examples=25
    )
