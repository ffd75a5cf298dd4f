"""wallet-pool's outbox for admins: ``/v1/admin/outbox`` needs the scope ``outbox:admin``; a dead-lettered
``wallet.assigned`` is listed and replayed; ``/metrics`` has the outbox's gauges for each peer."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import utcnow
from servicekit.outbox import add_event
from wallet_pool.__main__ import main as wallet_pool_cli
from wallet_pool.db import outbox
from wallet_pool.testing import PoolApi


async def test_admins_with_the_scope_list_and_replay_dead_events(
    api: PoolApi, reader_api: PoolApi, session: AsyncSession
) -> None:
    refused = await reader_api.client.get("/v1/admin/outbox", headers=reader_api.headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "scope_missing")

    order_id = str(uuid.uuid4())
    event_id = await add_event(
        session,
        outbox,
        destination="order-api",
        event_type="wallet.assigned",
        payload={"order_id": order_id},
        aggregate_id=order_id,
    )
    await session.execute(update(outbox).where(outbox.c.id == event_id).values(attempts=12, dead_at=utcnow()))

    listed = await api.client.get(
        "/v1/admin/outbox", params={"status": "dead", "event_type": "wallet.assigned"}, headers=api.headers
    )
    assert [(i["id"], i["aggregate_id"]) for i in listed.json()["items"]] == [(event_id, order_id)]

    replayed = await api.client.post(f"/v1/admin/outbox/{event_id}/replay", headers=api.headers)
    assert (replayed.status_code, replayed.json()["status"]) == (200, "pending")
    assert (
        await api.client.get("/v1/admin/outbox", params={"status": "dead"}, headers=api.headers)
    ).json() == {
        "items": [],
        "next_cursor": None,
    }
    unknown = await api.client.post(f"/v1/admin/outbox/{uuid.uuid4()}/replay", headers=api.headers)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "outbox_event_not_found")


async def test_metrics_have_the_outbox_gauges_for_every_peer(api: PoolApi) -> None:
    response = await api.client.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("outbox_pending", "outbox_in_flight", "outbox_dead", "outbox_oldest_pending_age_seconds"):
        destinations = {s.labels["destination"] for s in families[name].samples}
        assert destinations == {"order-api", "notifier"}, name


async def test_the_command_line_lists_and_refuses_an_unknown_replay(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("WALLET_POOL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WALLET_POOL_DATABASE_URL", database_url)
    monkeypatch.setenv("WALLET_POOL_LOG_LEVEL", "WARNING")

    assert await asyncio.to_thread(wallet_pool_cli, ["outbox", "list", "--status", "dead"]) == 0
    assert all(json.loads(line)["status"] == "dead" for line in capsys.readouterr().out.splitlines())
    unknown = str(uuid.uuid4())
    assert await asyncio.to_thread(wallet_pool_cli, ["outbox", "replay", unknown]) == 2
    assert capsys.readouterr().err.startswith(f"outbox_event_not_found: No outbox event {unknown}.")
