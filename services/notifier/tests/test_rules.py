"""``notifier.rules``: each event type picks the right template and variables; ``POST /v1/events`` queues
one email per event, however often it is delivered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from notifier.notifications.models import Notification
from notifier.rules import emails_for
from notifier.testing import KEYS, RunningApp
from servicekit.db import Database
from servicekit.outbox import EventEnvelope

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
EXPIRES = (NOW + timedelta(minutes=30)).isoformat()


def _order(**changes: Any) -> dict[str, Any]:
    return {
        "order_id": "ord-1",
        "customer_id": "cus-1",
        "status": "awaiting_deposit",
        "from_currency": "BTC",
        "from_network": "bitcoin",
        "to_currency": "USDT",
        "to_network": "tron",
        "amount": "0.015",
        "priority": "normal",
        "deposit_address": "bc1qaddress",
        "queue_position": None,
        "expires_at": EXPIRES,
        "operator_id": None,
        "locale": "ru",
        "version": 1,
        "customer_email": "anna@example.com",
        "_redact_after_delivery": ["customer_email"],
        **changes,
    }


def _envelope(event_type: str, payload: dict[str, Any], event_id: str = "evt-1") -> EventEnvelope:
    return EventEnvelope(
        id=event_id,
        type=event_type,
        source="order-api",
        occurred_at=NOW,
        aggregate_id="ord-1",
        payload=payload,
    )


def test_order_created_with_an_address() -> None:
    [email] = emails_for(_envelope("order.created", _order()))
    assert (email.template, email.recipient, email.locale, email.order_id) == (
        "order_created",
        "anna@example.com",
        "ru",
        "ord-1",
    )
    assert email.variables == {
        "order_id": "ord-1",
        "amount": "0.015",
        "currency_from": "BTC",
        "currency_to": "USDT",
        "address": "bc1qaddress",
        "queue_position": None,
        "expires_at": EXPIRES,
    }


def test_order_created_queued() -> None:
    payload = _order(status="queued", deposit_address=None, queue_position=2, expires_at=None)
    [email] = emails_for(_envelope("order.created", payload))
    assert email.template == "order_created"
    assert email.variables["address"] is None
    assert email.variables["queue_position"] == 2


def test_address_assigned_to_a_queued_order_is_address_ready() -> None:
    payload = _order(from_status="queued")
    [email] = emails_for(_envelope("order.status_changed", payload))
    assert email.template == "address_ready"
    assert email.variables == {
        "order_id": "ord-1",
        "amount": "0.015",
        "currency_from": "BTC",
        "address": "bc1qaddress",
        "expires_at": EXPIRES,
    }


@pytest.mark.parametrize("status", ["completed", "cancelled", "expired"])
def test_closing_an_order_is_order_status_changed(status: str) -> None:
    payload = _order(status=status, from_status="awaiting_deposit")
    [email] = emails_for(_envelope("order.status_changed", payload))
    assert email.template == "order_status_changed"
    assert email.variables == {
        "order_id": "ord-1",
        "status": status,
        "amount": "0.015",
        "currency_from": "BTC",
        "currency_to": "USDT",
    }


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("order.status_changed", _order(status="in_progress", from_status="awaiting_deposit")),
        ("order.status_changed", _order(status="awaiting_deposit", from_status="in_progress")),
        ("order.taken", _order(status="in_progress", from_status="awaiting_deposit")),
        ("order.created", _order(customer_email=None)),
    ],
)
def test_other_events_send_nothing(event_type: str, payload: dict[str, Any]) -> None:
    assert emails_for(_envelope(event_type, payload)) == []


def test_email_code() -> None:
    payload = {
        "customer_id": "cus-1",
        "email": "anna@example.com",
        "locale": "en",
        "code": "482913",
        "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
    }
    [email] = emails_for(_envelope("customer.email_code_requested", payload))
    assert (email.template, email.recipient, email.locale) == ("email_code", "anna@example.com", "en")
    assert email.variables == {"code": "482913", "minutes": 10}


async def test_a_duplicate_envelope_sends_one_email(notifier_app: RunningApp, database: Database) -> None:
    envelope = _envelope("order.created", _order(), event_id="evt-dup").model_dump(mode="json")
    for expected in ("processed", "duplicate"):
        response = await notifier_app.client.post(
            "/v1/events", json=envelope, headers=notifier_app.auth(KEYS.publisher)
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == expected
    async with database.sessionmaker() as session:
        rows = (await session.execute(select(Notification.template, Notification.event_id))).all()
    assert [tuple(row) for row in rows] == [("order_created", "evt-dup")]
