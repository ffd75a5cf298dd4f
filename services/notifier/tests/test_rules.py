"""``notifier.rules``: each event type picks the right template and variables (customer emails, operator
Telegram cards); ``POST /v1/events`` queues one message per rule and event, however often it is delivered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from notifier.notifications.models import Channel, Notification
from notifier.rules import Message, messages_for
from notifier.testing import KEYS, RunningApp, order_payload
from servicekit.db import Database
from servicekit.errors import ValidationFailedError
from servicekit.outbox import EventEnvelope

NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)
EXPIRES = (NOW + timedelta(minutes=30)).isoformat()


def _order(**changes: Any) -> dict[str, Any]:
    return {
        **order_payload(expires_at=EXPIRES, locale="ru"),
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


def emails_for(envelope: EventEnvelope) -> list[Message]:
    return [m for m in messages_for(envelope) if m.channel is Channel.email]


def cards_for(envelope: EventEnvelope, *, telegram: bool = True) -> list[Message]:
    return [m for m in messages_for(envelope, telegram=telegram) if m.channel is Channel.telegram]


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


@pytest.mark.parametrize("announced_as", ["queued", "awaiting_address"])
def test_an_address_for_an_order_announced_without_one_is_address_ready(announced_as: str) -> None:
    payload = _order(from_status=announced_as)
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
        ("order.status_changed", _order(status="queued", from_status="awaiting_address", queue_position=3)),
        ("order.taken", _order(status="in_progress", from_status="awaiting_deposit")),
        ("order.created", _order(customer_email=None)),
    ],
)
def test_other_events_send_the_customer_nothing(event_type: str, payload: dict[str, Any]) -> None:
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
    assert [tuple(row) for row in rows] == [("order_created", "evt-dup")]  # Telegram is off in this app


# --- operators: Telegram order cards ---------------------------------------------------------------------


def _card_order(payload: dict[str, Any]) -> dict[str, Any]:
    fields = (
        "order_id",
        "status",
        "from_currency",
        "from_network",
        "to_currency",
        "to_network",
        "amount",
        "priority",
        "deposit_address",
        "queue_position",
        "expires_at",
        "operator_id",
        "version",
    )
    return {**{f: payload[f] for f in fields}, "operator_name": payload.get("operator_name")}


def test_a_new_order_awaiting_deposit_is_a_takeable_card_for_operators() -> None:
    payload = _order()
    [card] = cards_for(_envelope("order.created", payload))

    assert (card.template, card.recipient, card.order_id, card.locale) == (
        "order_card",
        "operators",
        "ord-1",
        "",
    )
    assert card.variables == {
        "kind": "order_card",
        "chat": "operators",
        "event": "order.created",
        "order": _card_order(payload),
        "note": None,
    }
    assert card.variables["order"]["deposit_address"] == "bc1qaddress"
    assert "customer_email" not in str(card.variables)


def test_a_new_queued_order_is_a_card_with_its_queue_place_and_no_address() -> None:
    payload = _order(status="queued", deposit_address=None, queue_position=2, expires_at=None)
    [card] = cards_for(_envelope("order.created", payload))

    assert card.variables["event"] == "order.created"
    assert card.variables["order"]["status"] == "queued"
    assert card.variables["order"]["queue_position"] == 2
    assert card.variables["order"]["deposit_address"] is None


@pytest.mark.parametrize("event_type", ["order.released", "order.assignment_timed_out"])
def test_an_order_back_in_the_pool_is_posted_again(event_type: str) -> None:
    payload = _order(
        from_status="in_progress",
        operator_id=None,
        operator_name=None,
        version=4,
        previous_operator_id="op-1",
        actor="system:assignment-timeout",
        comment=None,
    )
    [card] = cards_for(_envelope(event_type, payload))

    assert (card.recipient, card.variables["chat"], card.variables["event"]) == (
        "operators",
        "operators",
        event_type,
    )
    assert card.variables["order"]["status"] == "awaiting_deposit"
    assert card.variables["order"]["operator_id"] is None
    assert card.variables["order"]["version"] == 4


@pytest.mark.parametrize(
    ("event_type", "status", "comment"),
    [
        ("order.taken", "in_progress", None),
        ("order.status_changed", "payment_received", "funds arrived"),
        ("order.escalation_resolved", "in_progress", "refund approved"),
    ],
)
def test_other_order_changes_update_the_cards(event_type: str, status: str, comment: str | None) -> None:
    payload = _order(status=status, operator_id="op-7", operator_name="Boris", version=3, comment=comment)
    [card] = cards_for(_envelope(event_type, payload))

    assert card.variables["event"] == event_type
    assert card.variables["chat"] == "operators"
    assert card.variables["order"]["operator_name"] == "Boris"
    assert card.variables["order"]["status"] == status
    assert card.variables["note"] == comment


def test_an_escalation_goes_to_the_support_chat_with_its_reason() -> None:
    reason = "Customer sent the wrong amount <twice>" + "!" * 1200
    payload = _order(
        status="in_progress",
        operator_id="op-7",
        operator_name="Boris",
        comment=reason,
        escalation_id="esc-1",
        escalation_status="open",
    )
    [card] = cards_for(_envelope("order.escalated", payload))

    assert (card.recipient, card.variables["chat"], card.variables["event"]) == (
        "support",
        "support",
        "order.escalated",
    )
    assert card.variables["note"] == reason[:1000]


def test_an_escalation_comment_and_telegram_turned_off_send_no_card() -> None:
    assert cards_for(_envelope("order.escalation_commented", _order(comment="any news?"))) == []
    assert cards_for(_envelope("order.created", _order()), telegram=False) == []
    assert len(emails_for(_envelope("order.created", _order()))) == 1


def test_an_order_payload_missing_a_card_field_is_refused_naming_it() -> None:
    payload = _order()
    del payload["version"]

    with pytest.raises(ValidationFailedError) as raised:
        messages_for(_envelope("order.taken", payload))

    assert [e["field"] for e in raised.value.extra["errors"]] == ["payload.version"]
