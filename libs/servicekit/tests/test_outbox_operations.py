"""Operating an outbox, on PostgreSQL: its figures on ``/metrics``, ``/v1/admin/outbox`` (list, replay), and
the dead-letter report to the notifier.

The sender is an app built with servicekit in this process, its relay running; its peer ``kit-peer`` and its
``notifier`` are one stand-in receiver on loopback that refuses ``kit.refused`` for good (422: dead-lettered
at once) until told otherwise, answers ``kit.stuck`` with a conflict (retried later) and accepts the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import select

from desk_contracts.events import EVENTS
from servicekit.api_health import ApiHealthWatch
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key, require_scope
from servicekit.app import Runtime, create_service_app
from servicekit.db import Database, new_metadata
from servicekit.metrics import RequestMetrics
from servicekit.outbox import OUTBOX_DEAD_CLEARED, OUTBOX_DEAD_LETTERED, add_event, outbox_table
from servicekit.outbox_admin import OUTBOX_ADMIN_SCOPE, outbox_admin_router
from servicekit.settings import PeerSettings
from servicekit.testing import (
    async_url,
    create_database,
    drop_database,
    eventually,
    running_app,
    serve_stand_in,
)
from servicekit.testing.kitapps import KitSettings, create_tables

metadata = new_metadata()
outbox = outbox_table(metadata)
SCHEMA = "kit_ops"
ADMIN_KEY = mint_key("adm")
OTHER_KEY = mint_key("oth")


@dataclass
class Receiver:
    """The stand-in peer: what it accepted, and which event types it refuses for good."""

    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: set[str] = field(default_factory=lambda: {"kit.refused"})

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.accepted if e["type"] == event_type]

    def answer(self, envelope: dict[str, Any]) -> web.Response | None:
        if envelope["type"] in self.refused:
            problem = {"type": "about:blank", "title": "No", "status": 422, "code": "validation_failed"}
            return web.json_response(problem, status=422, content_type="application/problem+json")
        if envelope["type"] == "kit.stuck":
            problem = {"type": "about:blank", "title": "Busy", "status": 409, "code": "conflict"}
            return web.json_response(problem, status=409, content_type="application/problem+json")
        return None

    def app(self) -> web.Application:
        async def one(request: web.Request) -> web.Response:
            envelope = await request.json()
            refusal = self.answer(envelope)
            if refusal is not None:
                return refusal
            self.accepted.append(envelope)
            return web.json_response({"event_id": envelope["id"], "status": "processed"})

        async def batch(request: web.Request) -> web.Response:
            envelopes = (await request.json())["events"]
            if any(self.answer(e) is not None for e in envelopes):
                return web.json_response({"code": "conflict"}, status=409)  # then one at a time
            self.accepted.extend(envelopes)
            return web.json_response(
                {"receipts": [{"event_id": e["id"], "status": "processed"} for e in envelopes]}
            )

        app = web.Application()
        app.router.add_post("/v1/events", one)
        app.router.add_post("/v1/events/batch", batch)
        return app


@dataclass
class Sender:
    app: FastAPI
    client: httpx.AsyncClient
    database: Database
    receiver: Receiver

    async def add(self, event_type: str, *, aggregate_id: str | None = None, **payload: Any) -> str:
        async with self.database.sessionmaker.begin() as session:
            return await add_event(
                session,
                outbox,
                destination="kit-peer",
                event_type=event_type,
                payload=payload,
                aggregate_id=aggregate_id,
            )

    async def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return await self.client.request(method, path, headers=headers, **kwargs)


def figure(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    name = await create_database("sk_outbox_ops")
    try:
        yield async_url(name)
    finally:
        await drop_database(name)


@pytest.fixture
async def sender(database_url: str, tmp_path: Path) -> AsyncIterator[Sender]:
    receiver = Receiver()
    settings = KitSettings(
        service_name="kit-sender",
        var_dir=tmp_path,
        database_url=database_url,
        database_schema=SCHEMA,
        trace_database=False,
        api_keys=[
            ApiKeyEntry(name="admin", hash=hash_key(ADMIN_KEY), scopes=[OUTBOX_ADMIN_SCOPE]),
            ApiKeyEntry(name="other", hash=hash_key(OTHER_KEY), scopes=["metrics:read"]),
        ],
        outbox_poll_seconds=0.05,
        outbox_linger_seconds=0.0,
        outbox_max_attempts=3,
        outbox_backoff_base_seconds=60.0,  # a failed event waits, pending, for the rest of the test
        outbox_dead_letter_check_seconds=0.1,
    )
    async with serve_stand_in(receiver.app()) as url:
        receiver.url = url
        runtime = Runtime(settings, schema=SCHEMA)
        await create_tables(runtime.database, metadata)
        async with runtime.database.engine.begin() as connection:
            await connection.execute(outbox.delete())
        for peer in ("kit-peer", "notifier"):
            runtime.add_peer(peer, PeerSettings(url=url, api_key=SecretStr("k"), timeout_seconds=5))
        runtime.add_outbox_relay(outbox, dead_letters_to="notifier")
        app = create_service_app(settings=settings, runtime=runtime, title="kit sender", description="tests")
        app.include_router(
            outbox_admin_router(table=outbox, guard=require_scope(OUTBOX_ADMIN_SCOPE), who="Admins")
        )
        async with running_app(app) as client:
            yield Sender(app=app, client=client, database=runtime.database, receiver=receiver)


async def test_the_metrics_show_what_the_outbox_holds_and_what_it_delivered(sender: Sender) -> None:
    before = await sender.metrics()
    for destination in ("kit-peer", "notifier"):
        assert figure(before, "outbox_pending", destination=destination) == 0
        assert figure(before, "outbox_dead", destination=destination) == 0
        assert ("outbox_in_flight", frozenset({("destination", destination)})) in before

    await sender.add("kit.stuck")
    await sender.add("kit.refused")
    await sender.add("kit.refused")
    await sender.add("kit.fine")

    def settled(m: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> bool:
        return (
            figure(m, "outbox_pending", destination="kit-peer") == 1
            and figure(m, "outbox_dead", destination="kit-peer") == 2
            and figure(m, "outbox_deliveries_total", destination="kit-peer", event_type="kit.fine") == 1
        )

    after = await eventually(sender.metrics, until=settled, message="the figures did not follow the outbox")
    assert figure(after, "outbox_oldest_pending_age_seconds", destination="kit-peer") > 0
    assert figure(after, "outbox_in_flight", destination="kit-peer") == 0
    failures = "outbox_delivery_failures_total"
    assert figure(after, failures, destination="kit-peer", event_type="kit.refused", outcome="dead") == 2
    assert figure(after, failures, destination="kit-peer", event_type="kit.stuck", outcome="retry") == 1
    assert figure(after, "outbox_oldest_pending_age_seconds", destination="notifier") == 0


async def test_dead_events_are_reported_listed_replayed_and_the_report_clears(sender: Sender) -> None:
    first = await sender.add("kit.refused", aggregate_id="order-1", customer_email="jane@example.com")
    second = await sender.add("kit.refused", aggregate_id="order-2", customer_email="joe@example.com")
    stuck = await sender.add("kit.stuck", aggregate_id="order-3")
    receiver = sender.receiver

    # The notifier is told the count per destination and event type (once per change of it).
    reports = await eventually(
        lambda: _async(receiver.of_type(OUTBOX_DEAD_LETTERED)),
        until=lambda r: bool(r) and r[-1]["payload"]["dead"] == 2,
        message="no dead-letter report of both events",
    )
    report = reports[-1]
    assert report["source"] == "kit-sender"
    assert report["payload"]["dead"] == 2
    assert report["payload"]["events"] == [
        {"destination": "kit-peer", "event_type": "kit.refused", "dead": 2}
    ]

    # Admins only.
    assert (await sender.client.get("/v1/admin/outbox")).status_code == 401
    other = await sender.client.get("/v1/admin/outbox", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 403

    listed = await sender.admin("GET", "/v1/admin/outbox", params={"status": "dead"})
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["items"]] == [second, first]  # newest first
    item = listed.json()["items"][1]
    assert item["status"] == "dead"
    assert item["attempts"] == 1
    assert item["destination"] == "kit-peer"
    assert item["aggregate_id"] == "order-1"
    assert item["last_error"].startswith("PermanentDeliveryError")
    assert item["dead_at"] is not None
    assert "payload" not in item
    assert "example.com" not in listed.text

    page = await sender.admin("GET", "/v1/admin/outbox", params={"status": "dead", "limit": 1})
    assert [i["id"] for i in page.json()["items"]] == [second]
    rest = await sender.admin(
        "GET", "/v1/admin/outbox", params={"status": "dead", "limit": 1, "cursor": page.json()["next_cursor"]}
    )
    assert [i["id"] for i in rest.json()["items"]] == [first]
    assert rest.json()["next_cursor"] is None
    by_order = await sender.admin("GET", "/v1/admin/outbox", params={"aggregate_id": "order-3"})
    assert [(i["id"], i["status"]) for i in by_order.json()["items"]] == [(stuck, "pending")]

    async def reports_sent() -> list[str]:
        answer = await sender.admin("GET", "/v1/admin/outbox", params={"event_type": OUTBOX_DEAD_LETTERED})
        return [i["status"] for i in answer.json()["items"]]

    await eventually(
        reports_sent, until=lambda s: s == ["delivered"] * len(reports), message="reports unsent"
    )
    bad = await sender.admin("GET", "/v1/admin/outbox", params={"status": "lost"})
    assert bad.status_code == 422

    # A pending event and an unknown one cannot be replayed.
    refused = await sender.admin("POST", f"/v1/admin/outbox/{stuck}/replay")
    assert refused.status_code == 409
    assert refused.json()["code"] == "outbox_event_not_replayable"
    assert (await sender.admin("POST", "/v1/admin/outbox/no-such-event/replay")).status_code == 404

    # The cause is fixed: replayed events go out now, with a fresh attempt budget.
    receiver.refused.clear()
    replayed = await sender.admin("POST", f"/v1/admin/outbox/{first}/replay")
    assert replayed.status_code == 200
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    assert (await sender.admin("POST", f"/v1/admin/outbox/{second}/replay")).status_code == 200

    async def delivered() -> list[str]:
        answer = await sender.admin("GET", "/v1/admin/outbox", params={"event_type": "kit.refused"})
        return [i["status"] for i in answer.json()["items"]]

    await eventually(delivered, until=lambda s: s == ["delivered", "delivered"], message="replays not sent")
    assert {e["id"] for e in receiver.of_type("kit.refused")} == {first, second}
    again = await sender.admin("POST", f"/v1/admin/outbox/{first}/replay")
    assert again.status_code == 409
    assert again.json()["status"] == 409

    # None dead any more: the report clears. A report is a change (one death or replay at a time, as the
    # checks saw them): never the same count twice in a row.
    await eventually(lambda: _async(receiver.of_type(OUTBOX_DEAD_CLEARED)), message="no all-clear report")
    counts = [r["payload"]["dead"] for r in receiver.of_type(OUTBOX_DEAD_LETTERED)]
    assert 2 in counts
    assert set(counts) <= {1, 2}
    assert all(earlier != later for earlier, later in pairwise(counts))
    assert len(receiver.of_type(OUTBOX_DEAD_CLEARED)) == 1
    # What the notifier's models read back, to the letter.
    for told in receiver.of_type(OUTBOX_DEAD_LETTERED) + receiver.of_type(OUTBOX_DEAD_CLEARED):
        assert EVENTS[told["type"]].model_validate(told["payload"]).payload() == told["payload"]


async def _async(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return value


# --- a replica's own API health: api.degraded / api.recovered (servicekit.api_health) -----------------------


async def test_a_replicas_5xx_share_and_slow_routes_are_reported_once_per_crossing_and_recover(
    sender: Sender,
) -> None:
    registry = CollectorRegistry()
    requests = RequestMetrics(registry)
    watch = ApiHealthWatch(
        registry=registry,
        database=sender.database,
        table=outbox,
        service="kit-sender",
        destination="kit-peer",
        window_seconds=300,
        error_percent=5.0,
        p95_seconds=1.0,
        min_requests=10,
        exclude_routes={"/v1/stream"},
        replica="replica-a",
    )

    def serve(route: str, count: int, *, status: int = 200, seconds: float = 0.01) -> None:
        for _ in range(count):
            requests.record(method="GET", path=route, route=route, status=status, elapsed=seconds)

    async def reports() -> list[tuple[str, dict[str, Any]]]:
        async with sender.database.sessionmaker() as session:
            rows = await session.execute(
                select(outbox.c.event_type, outbox.c.payload)
                .where(outbox.c.aggregate_id == "api.health:kit-sender:replica-a")
                .order_by(outbox.c.created_at, outbox.c.id)
            )
            return [(row.event_type, row.payload) for row in rows]

    serve("/v1/things", 30)
    serve("/v1/stream", 30, seconds=60.0)  # held open on purpose: no latency
    assert await watch.check(at=0) == 0  # no full window yet
    assert await watch.check(at=300) == 0  # healthy
    serve("/v1/things", 10, status=503)
    assert await watch.check(at=600) == 1  # 10 of 10 failed
    assert await watch.check(at=600) == 0  # once per crossing
    assert await watch.check(at=899) == 0  # nor again within the window
    serve("/v1/slow", 30, seconds=2.0)
    assert await watch.check(at=900) == 1  # a slow route joins in
    serve("/v1/slow", 30, seconds=2.0)
    assert await watch.check(at=1199) == 0
    assert await watch.check(at=1200) == 1  # still degraded: said again once a window (the replica is alive)
    serve("/v1/things", 40)
    serve("/v1/slow", 30)
    assert await watch.check(at=1500) == 1  # recovered
    assert await watch.check(at=1500) == 0
    assert await watch.check(at=2400) == 0  # recovered is not repeated

    told = await reports()
    assert [kind for kind, _ in told] == ["api.degraded", "api.degraded", "api.degraded", "api.recovered"]
    errors, slow, still, recovered = (payload for _, payload in told)
    assert (still["errors_alert"], [r["route"] for r in still["slow_routes"]]) == (True, ["GET /v1/slow"])
    assert (errors["errors"], errors["requests"], errors["errors_alert"], errors["slow_routes"]) == (
        10,
        10,
        True,
        [],
    )
    assert slow["slow_routes"] == [{"route": "GET /v1/slow", "p95_seconds": 2.5, "requests": 30}]
    assert (recovered["requests"], recovered["errors"], recovered["replica"]) == (70, 0, "replica-a")
    for kind, payload in told:  # read back by the notifier's model, to the letter
        assert EVENTS[kind].model_validate(payload).payload() == payload
