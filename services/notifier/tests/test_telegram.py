"""Telegram to operators: order cards and alerts go through the durable queue to telegram-gateway's
``POST /v1/messages`` (a stand-in on loopback answering as contract B): every attempt recorded, transient
answers retried, permanent ones not, the notification id as ``message_id``, the trace continued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from sqlalchemy import select

from notifier.main import create_app
from notifier.notifications.models import Channel, Notification
from notifier.notifications.service import queue_notification
from notifier.testing import (
    KEYS,
    TEST_PROTECTION,
    StandInGateway,
    delivery_attempts,
    make_settings,
    make_telegram_worker,
    order_payload,
    running_workers,
    stored_notification,
)
from servicekit.db import Database
from servicekit.telemetry import configure_tracing
from servicekit.testing import eventually, free_port, running_app

CARD = {
    "kind": "order_card",
    "chat": "operators",
    "event": "order.created",
    # a card shows the order as order-api announced it, less whom it belongs to, plus who holds it
    "order": {
        key: value
        for key, value in order_payload(operator_name=None).items()
        if key not in ("customer_id", "locale")
    },
    "note": None,
}


async def _queue_card(database: Database, variables: dict[str, Any] | None = None) -> str:
    async with database.sessionmaker.begin() as session:
        return await queue_notification(
            session=session,
            protection=TEST_PROTECTION,
            channel=Channel.telegram,
            template="order_card",
            locale="",
            recipient="operators",
            variables=variables or CARD,
            order_id="ord-1",
        )


async def test_a_card_is_posted_with_the_notification_id_as_message_id(database: Database) -> None:
    async with StandInGateway().serving() as gateway:
        client = gateway.client()
        notification_id = await _queue_card(database)
        async with running_workers(make_telegram_worker(database, client)):
            sent = await eventually(
                lambda: stored_notification(database, notification_id), until=lambda n: n.status == "sent"
            )
        await client.aclose()

    assert gateway.requests == [{**CARD, "message_id": notification_id, "_status": 200}]
    assert sent.attempts == 1
    [attempt] = await delivery_attempts(database, notification_id)
    assert (attempt.provider, attempt.outcome, attempt.error) == ("telegram-gateway", "sent", None)


async def test_telegram_unavailable_is_retried_with_the_same_message_id_and_trace_until_sent(
    database: Database,
) -> None:
    configure_tracing(service="notifier")
    async with StandInGateway(answers=[503, 503]).serving() as gateway:
        client = gateway.client()
        with trace.get_tracer("test").start_as_current_span("POST /v1/events") as request_span:
            notification_id = await _queue_card(database)
        trace_id = format(request_span.get_span_context().trace_id, "032x")
        async with running_workers(make_telegram_worker(database, client)):
            sent = await eventually(
                lambda: stored_notification(database, notification_id),
                until=lambda n: n.status == "sent",
                within=20,
            )
        await client.aclose()

    assert sent.attempts == 3
    assert [a.outcome for a in await delivery_attempts(database, notification_id)] == [
        "transient",
        "transient",
        "sent",
    ]
    assert [r["_status"] for r in gateway.requests] == [503, 503, 200]
    assert {r["message_id"] for r in gateway.requests} == {notification_id}
    traceparents = [h.get("traceparent", h.get("Traceparent", "")) for h in gateway.headers]
    assert len(traceparents) == 3
    assert {tp.split("-")[1] for tp in traceparents} == {trace_id}
    assert len({tp.split("-")[2] for tp in traceparents}) == 3  # one span per attempt


@pytest.mark.parametrize(("status", "outcome"), [(409, "permanent"), (422, "permanent"), (429, "transient")])
async def test_gateway_answers_are_classified_per_the_contract(
    database: Database, status: int, outcome: str
) -> None:
    async with StandInGateway(answers=[status]).serving() as gateway:
        client = gateway.client()
        notification_id = await _queue_card(database)
        async with running_workers(make_telegram_worker(database, client)):
            final = await eventually(
                lambda: stored_notification(database, notification_id),
                until=lambda n: n.status != "pending",
                within=20,
            )
        await client.aclose()

    attempts = await delivery_attempts(database, notification_id)
    assert attempts[0].outcome == outcome
    assert attempts[0].error is not None
    assert str(status) in attempts[0].error
    if outcome == "permanent":
        assert (final.status, final.attempts, len(gateway.requests)) == ("failed", 1, 1)
    else:
        assert (final.status, [a.outcome for a in attempts]) == ("sent", ["transient", "sent"])


async def test_a_telegram_disabled_gateway_fails_the_message_at_once(database: Database) -> None:
    async with StandInGateway(answers=[409]).serving() as gateway:
        client = gateway.client()
        notification_id = await _queue_card(database)
        async with running_workers(make_telegram_worker(database, client)):
            failed = await eventually(
                lambda: stored_notification(database, notification_id), until=lambda n: n.status != "pending"
            )
        await client.aclose()

    assert failed.status == "failed"
    assert failed.last_error is not None
    assert "telegram_disabled" in failed.last_error


async def test_an_unreachable_gateway_is_transient_then_dead(database: Database) -> None:
    gateway = StandInGateway(url=f"http://127.0.0.1:{free_port()}")
    client = gateway.client()
    notification_id = await _queue_card(database)
    try:
        async with running_workers(make_telegram_worker(database, client, max_attempts=2)):
            dead = await eventually(
                lambda: stored_notification(database, notification_id), until=lambda n: n.status == "dead"
            )
    finally:
        await client.aclose()

    assert dead.attempts == 2
    assert [a.outcome for a in await delivery_attempts(database, notification_id)] == [
        "transient",
        "transient",
    ]


def _order_event(event_type: str, event_id: str, **changes: Any) -> dict[str, Any]:
    payload = {
        **order_payload(operator_name=None),
        "from_status": None,
        "actor": "operator:op-7",
        "comment": None,
        **changes,
    }
    return {
        "id": event_id,
        "type": event_type,
        "source": "order-api",
        "occurred_at": "2026-11-21T15:00:00+00:00",
        "aggregate_id": "ord-1",
        "payload": payload,
    }


async def test_order_events_reach_the_gateway_as_cards(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    async with StandInGateway().serving() as gateway:
        app = create_app(make_settings(database_url, tmp_path, gateway_url=gateway.url))
        async with running_app(app) as client:
            events = [
                _order_event("order.created", "e-1", status="queued", deposit_address=None, queue_position=3),
                _order_event("order.status_changed", "e-2", from_status="queued", version=2),
                _order_event(
                    "order.taken",
                    "e-3",
                    status="in_progress",
                    operator_id="op-7",
                    operator_name="Boris",
                    version=3,
                ),
                _order_event(
                    "order.escalated",
                    "e-4",
                    status="in_progress",
                    operator_id="op-7",
                    comment="Wrong amount",
                    version=3,
                ),
                _order_event("order.released", "e-5", operator_id=None, version=4),
                _order_event("order.released", "e-5", operator_id=None, version=4),  # a redelivery
            ]
            for event in events:
                response = await client.post(
                    "/v1/events", json=event, headers={"Authorization": f"Bearer {KEYS.publisher}"}
                )
                assert response.status_code == 200, response.text
            posted = await eventually(lambda: _posted(gateway), until=lambda p: len(p) == 5, within=20)
            sent_line = 'notifier_delivery_attempts_total{channel="telegram",outcome="sent",provider="telegram-gateway"} 5.0'

            async def metrics_page() -> str:
                return (await client.get("/metrics")).text

            # The attempt is counted once recorded, a moment after the gateway got the request.
            await eventually(metrics_page, until=lambda page: sent_line in page, within=10)

    by_event = {body["event"]: body for body in posted}
    assert sorted(by_event) == [
        "order.created",
        "order.escalated",
        "order.released",
        "order.status_changed",
        "order.taken",
    ]
    assert by_event["order.created"]["order"]["status"] == "queued"
    assert by_event["order.created"]["order"]["queue_position"] == 3
    assert by_event["order.taken"]["order"]["operator_name"] == "Boris"
    assert (by_event["order.escalated"]["chat"], by_event["order.escalated"]["note"]) == (
        "support",
        "Wrong amount",
    )
    assert by_event["order.released"]["order"]["version"] == 4
    async with database.sessionmaker() as session:
        ids = set(
            (await session.scalars(select(Notification.id).where(Notification.channel == "telegram"))).all()
        )
    assert {body["message_id"] for body in posted} == ids


async def _posted(gateway: StandInGateway) -> list[dict[str, Any]]:
    return gateway.posted
