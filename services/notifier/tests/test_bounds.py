"""Every input bounded: NUL characters, over-long or malformed events are 422 problems naming the field, never
500s, on PostgreSQL and on the embedded SQLite default; and the whole API fuzzed answers no 5xx."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifier.main import create_app
from notifier.testing import KEYS, RunningApp, make_settings
from servicekit.db import Database, resolve_database_url, utcnow
from servicekit.fuzzing import assert_no_server_errors
from servicekit.migrations import upgrade
from servicekit.openapi import documents_of
from servicekit.state import service_state
from servicekit.testing import running_app, service_dir


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fields_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["field"] for error in response.json()["errors"]]


def envelope(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "order.created",
        "source": "order-api",
        "occurred_at": utcnow().isoformat(),
        "payload": {},
        **overrides,
    }


@pytest.fixture(params=["postgresql", "sqlite"])
async def notifier(
    request: pytest.FixtureRequest, database: Database, database_url: str, tmp_path: Path
) -> AsyncIterator[RunningApp]:
    """notifier on its (emptied) PostgreSQL test database and on the embedded SQLite default."""
    url: str | None = database_url
    if request.param == "sqlite":
        url = None
        embedded = resolve_database_url(None, var_dir=tmp_path, service_name="notifier")
        await asyncio.to_thread(upgrade, service_dir("notifier"), url=embedded)
    app = create_app(make_settings(url, tmp_path))
    async with running_app(app) as client:
        assert service_state(app).runtime.database.engine.dialect.name == request.param
        yield RunningApp(app, client)


async def test_nul_in_a_filter_or_an_event_is_refused_naming_the_field(notifier: RunningApp) -> None:
    listed = await notifier.client.get(
        "/v1/notifications", params={"order_id": "\x00"}, headers=bearer(KEYS.reader)
    )
    assert fields_of(listed) == ["order_id"]
    publisher = bearer(KEYS.publisher)
    event = await notifier.client.post("/v1/events", json=envelope(id="a\x00b"), headers=publisher)
    assert fields_of(event) == ["id"]
    nested = envelope(payload={"order": {"email": "a\x00@example.com"}})
    assert fields_of(await notifier.client.post("/v1/events", json=nested, headers=publisher)) == [
        "payload.order.email"
    ]


async def test_over_long_or_malformed_events_are_a_422(notifier: RunningApp) -> None:
    publisher = bearer(KEYS.publisher)
    too_long = envelope(id="x" * 37, type="t" * 101, aggregate_id="a" * 65, traceparent="0" * 65)
    answer = await notifier.client.post("/v1/events", json=too_long, headers=publisher)
    assert fields_of(answer) == ["id", "type", "aggregate_id", "traceparent"]
    erased = await notifier.client.post(
        "/v1/events",
        json=envelope(type="customer.erased", payload={"customer_id": 5, "erased_at": utcnow().isoformat()}),
        headers=publisher,
    )
    assert fields_of(erased) == ["payload.customer_id"]


async def test_no_input_to_any_route_is_a_server_error(notifier: RunningApp) -> None:
    callers = {
        "anonymous": {},
        "reader": bearer(KEYS.reader),
        "admin": bearer(KEYS.admin),
        "order-api": bearer(KEYS.publisher),
        "on-call": bearer(KEYS.on_call),
    }
    await assert_no_server_errors(
        notifier.client, documents_of(notifier.app).complete(), callers=callers, max_examples=25
    )
