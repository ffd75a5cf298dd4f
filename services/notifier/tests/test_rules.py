"""``notifier.rules``: each event type picks the right template and variables (customer emails, operator
Telegram cards); ``POST /v1/events`` queues one message per rule and event, however often it is delivered."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from notifier.notifications.models import Channel, Notification
from notifier.rules import Message, already_told, messages_for
from notifier.testing import KEYS, RunningApp, SmtpServer, order_payload
from notifier.webhooks.events import OrderData, webhook_events
from servicekit.db import Database
from servicekit.errors import ValidationFailedError
from servicekit.outbox import EventEnvelope
from servicekit.testing import eventually

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
        "status": "awaiting_deposit",
        "address": "bc1qaddress",
        "queue_position": None,
        "expires_at": EXPIRES,
    }
    assert email.once_per_order


def test_order_created_queued() -> None:
    payload = _order(status="queued", deposit_address=None, queue_position=2, expires_at=None)
    [email] = emails_for(_envelope("order.created", payload))
    assert email.template == "order_created"
    assert email.variables["address"] is None
    assert email.variables["queue_position"] == 2


def test_order_created_while_the_address_is_being_prepared() -> None:
    payload = _order(status="awaiting_address", deposit_address=None, queue_position=None)
    [email] = emails_for(_envelope("order.created", payload))
    assert email.template == "order_created"
    assert email.variables["status"] == "awaiting_address"
    assert email.variables["address"] is None
    assert email.variables["queue_position"] is None


@pytest.mark.parametrize("from_status", ["queued", "awaiting_address"])
def test_an_address_for_an_order_without_one_is_address_ready(from_status: str) -> None:
    payload = _order(from_status=from_status)
    [email] = emails_for(_envelope("order.status_changed", payload))
    assert email.template == "address_ready"
    assert email.once_per_order
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


def test_a_completion_email_tells_what_moved_and_no_address() -> None:
    transaction = {
        "deposit_tx_hash": "a" * 64,
        "deposit_amount": "0.014",
        "deposit_seen_at": "2026-12-06T10:00:00+00:00",
        "payout_tx_hash": "b" * 64,
        "payout_amount": "1499.5",
        "payout_network_fee": "1.2",
        "payment": "underpaid",
    }
    payload = _order(status="completed", from_status="in_progress", transaction=transaction)
    [email] = emails_for(_envelope("order.status_changed", payload))
    assert email.variables == {
        "order_id": "ord-1",
        "status": "completed",
        "amount": "0.015",
        "currency_from": "BTC",
        "currency_to": "USDT",
        "received": "0.014",
        "sent": "1499.5",
        "payout_tx_hash": "b" * 64,
    }
    tiny = {**transaction, "deposit_amount": "0.0000004", "payout_amount": "0.0000004"}
    [small] = emails_for(_envelope("order.status_changed", {**payload, "transaction": tiny}))
    assert (small.variables["received"], small.variables["sent"]) == ("0.0000004", "0.0000004")


@pytest.mark.parametrize(
    ("event_type", "payload"),
    [
        ("order.status_changed", _order(status="in_progress", from_status="awaiting_deposit")),
        ("order.status_changed", _order(status="awaiting_deposit", from_status="in_progress")),
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


@pytest.mark.parametrize(
    ("template", "earlier", "told"),
    [
        ("order_created", [], False),
        ("order_created", [("order_created", {"address": None})], True),
        ("order_created", [("address_ready", {"address": "bc1qaddress"})], True),  # announced late
        ("address_ready", [("order_created", {"address": None, "status": "awaiting_address"})], False),
        ("address_ready", [("order_created", {"address": "bc1qaddress"})], True),
        ("address_ready", [("order_created", {"address": None}), ("address_ready", {})], True),
        ("address_ready", [("order_created", None)], True),  # erased: nothing more is sent about it
        ("address_ready", [("order_status_changed", {"status": "cancelled"})], False),
    ],
)
def test_a_fact_is_told_once_per_order(
    template: str, earlier: list[tuple[str, dict[str, Any] | None]], told: bool
) -> None:
    assert already_told(template, earlier) is told


async def _post(app: RunningApp, envelope: EventEnvelope) -> None:
    response = await app.client.post(
        "/v1/events", json=envelope.model_dump(mode="json"), headers=app.auth(KEYS.publisher)
    )
    assert response.status_code == 200, response.text


async def _templates_of(database: Database, order_id: str) -> list[str]:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification.template)
            .where(Notification.order_id == order_id)
            .order_by(Notification.created_at, Notification.id)
        )
        return list(rows)


async def test_an_order_announced_twice_and_its_address_arriving_make_two_coherent_emails(
    notifier_app: RunningApp, database: Database, smtp_server: SmtpServer
) -> None:
    preparing = _order(order_id="ord-twice", status="awaiting_address", deposit_address=None, locale="en")
    await _post(notifier_app, _envelope("order.created", preparing, event_id="evt-a1"))
    await _post(notifier_app, _envelope("order.created", preparing, event_id="evt-a2"))
    arrived = _order(order_id="ord-twice", from_status="awaiting_address", version=2, locale="en")
    await _post(notifier_app, _envelope("order.status_changed", arrived, event_id="evt-a3"))
    await _post(notifier_app, _envelope("order.status_changed", arrived, event_id="evt-a4"))

    assert await _templates_of(database, "ord-twice") == ["order_created", "address_ready"]
    mailbox = await eventually(
        lambda: asyncio.sleep(0, {str(m["Subject"]): m for m in smtp_server.messages}),
        until=lambda received: len(received) == 2,
        message="both emails delivered",
    )
    created = _text(mailbox["Your order ord-twice has been created"])
    ready = _text(mailbox["Order ord-twice: your deposit address is ready"])
    assert "We are preparing your deposit address and will email it to you shortly." in created
    assert "bc1qaddress" not in created
    assert "queue" not in created
    assert "None" not in created
    assert "Please send exactly 0.015 BTC to:" in ready
    assert "bc1qaddress" in ready
    assert len(smtp_server.messages) == 2


def _text(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def test_an_order_announced_with_its_address_gets_no_address_ready(
    notifier_app: RunningApp, database: Database
) -> None:
    await _post(notifier_app, _envelope("order.created", _order(order_id="ord-with"), event_id="evt-b1"))
    late = _order(order_id="ord-with", from_status="queued", version=2)
    await _post(notifier_app, _envelope("order.status_changed", late, event_id="evt-b2"))

    assert await _templates_of(database, "ord-with") == ["order_created"]


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


def test_a_reassignment_edits_the_cards_and_names_both_operators_to_tell() -> None:
    payload = _order(
        status="in_progress",
        operator_id="op-8",
        operator_name="Boris",
        version=6,
        previous_operator_id="op-7",
        previous_operator_name="Anna",
        operator_telegram_user_id=802,
        previous_operator_telegram_user_id=701,
        actor="operator:sup-1",
        actor_role="support",
        comment="Anna is off",
    )
    [card] = cards_for(_envelope("order.reassigned", payload))

    assert (card.recipient, card.variables["event"], card.variables["note"]) == (
        "operators",
        "order.reassigned",
        "Anna is off",
    )
    assert card.variables["order"]["operator_name"] == "Boris"
    assert card.variables["reassignment"] == {
        "previous_operator_name": "Anna",
        "previous_telegram_user_id": 701,
        "telegram_user_id": 802,
        "actor_role": "support",
    }
    assert emails_for(_envelope("order.reassigned", payload)) == []


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


def test_an_auto_assignment_edits_the_cards_and_names_the_operator_to_tell() -> None:
    payload = _order(
        status="in_progress",
        operator_id="op-8",
        operator_name="Boris",
        version=4,
        actor="system:auto-assign",
        actor_role="system",
        lapses_at="2026-11-21T12:05:00+00:00",
        operator_telegram_user_id=802,
    )
    [card] = cards_for(_envelope("order.assigned", payload))

    assert (card.recipient, card.variables["event"]) == ("operators", "order.assigned")
    assert card.variables["order"]["operator_name"] == "Boris"
    assert card.variables["assignment"] == {"telegram_user_id": 802, "lapses_at": "2026-11-21T12:05:00+00:00"}
    assert emails_for(_envelope("order.assigned", payload)) == []


def test_a_lapsed_assignment_posts_the_card_again_and_names_the_operator_to_tell() -> None:
    payload = _order(
        status="awaiting_deposit",
        version=5,
        actor="system:auto-assign",
        previous_operator_id="op-8",
        previous_operator_name="Boris",
        previous_operator_telegram_user_id=802,
        comment="Not accepted within 5 minutes.",
    )
    [card] = cards_for(_envelope("order.assignment_lapsed", payload))

    assert (card.variables["event"], card.variables["note"]) == (
        "order.assignment_lapsed",
        "Not accepted within 5 minutes.",
    )
    assert card.variables["assignment"] == {"telegram_user_id": 802, "lapses_at": None}
    assert emails_for(_envelope("order.assignment_lapsed", payload)) == []


@pytest.mark.parametrize(
    ("event_type", "status", "from_status"),
    [
        ("order.assigned", "in_progress", "awaiting_deposit"),
        ("order.assignment_lapsed", "awaiting_deposit", "in_progress"),
    ],
)
def test_the_website_hears_of_an_auto_assignment_and_its_lapse_as_status_changes(
    event_type: str, status: str, from_status: str
) -> None:
    payload = _order(status=status, from_status=from_status, lapses_at="2026-11-21T12:05:00+00:00")
    [event] = webhook_events(_envelope(event_type, payload))
    assert isinstance(event.data, OrderData)
    assert (event.type, event.data.status, event.data.from_status) == (
        "order.status_changed",
        status,
        from_status,
    )
