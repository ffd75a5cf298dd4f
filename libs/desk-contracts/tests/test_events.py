"""``desk_contracts.events``: every event's payload survives the wire unchanged, in the wire format the services
have always written (decimal strings, ``+00:00`` times, sealed personal data), and the registry describes
each event fully enough for the README's catalogue."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from desk_contracts.events import (
    EVENTS,
    ORDER_EVENTS,
    OrderClosed,
    OrderCreated,
    OrderTransaction,
    PoolLow,
)

ORDER: dict[str, Any] = {
    "order_id": "ord-7",
    "customer_id": "cus-7",
    "status": "in_progress",
    "from_currency": "ETH",
    "from_network": "ethereum",
    "to_currency": "BTC",
    "to_network": "bitcoin",
    "amount": "1.250",
    "priority": "priority",
    "deposit_address": "0x52908400098527886E0F7030069857D2E4169EE7",
    "queue_position": None,
    "expires_at": "2026-11-21T15:30:00.123456+00:00",
    "operator_id": "op-1",
    "locale": "ru",
    "version": 5,
}
ACTION = {
    "from_status": "awaiting_deposit",
    "operator_name": "Boris",
    "actor": "operator:op-1",
    "actor_role": "operator",
    "channel": "telegram",
    "comment": None,
}
SEALED = {"sealed": "v1.k1.c2VhbGVk", "_redact_after_delivery": ["sealed"]}
ESCALATION = {"escalation_id": "esc-1", "escalation_status": "open"}
POOL = {
    "currency": "USDT",
    "network": "TRC20",
    "free": 2,
    "total": 40,
    "reserved": 30,
    "disabled": 8,
    "queued": 0,
    "free_percent": "6.25",
    "threshold_percent": "12.5",
    "level": "low",
    "observed_at": "2026-11-21T15:00:00+00:00",
}
QUEUE = {
    "currency": "USDT",
    "network": "TRC20",
    "queued": 12,
    "oldest_wait_seconds": 1250.0,
    "length_threshold": 10,
    "wait_threshold_seconds": 900.0,
    "observed_at": "2026-11-21T15:00:00+00:00",
}
API = {
    "service": "order-api",
    "replica": "api-1",
    "requests": 40,
    "errors": 10,
    "error_percent": 25.0,
    "window_seconds": 300.0,
    "observed_at": "2026-12-06T08:00:00+00:00",
}
PAYLOADS: dict[str, dict[str, Any]] = {
    "order.created": {**ORDER, **SEALED},
    "order.status_changed": {
        **ORDER,
        **ACTION,
        "status": "completed",
        "sealed": SEALED["sealed"],
        "_redact_after_delivery": ["transaction", "sealed"],  # the hashes are masked once delivered too
        "transaction": {
            "deposit_tx_hash": "a" * 64,
            "deposit_amount": "1.2499999",
            "deposit_seen_at": "2026-11-21T15:10:00+00:00",
            "payout_tx_hash": "b" * 64,
            "payout_amount": "0.0000004",
            "payout_network_fee": None,
            "payment": "underpaid",
        },
    },
    "order.taken": {**ORDER, **ACTION},
    "order.released": {**ORDER, **ACTION, "previous_operator_id": "op-1"},
    "order.assignment_timed_out": {**ORDER, **ACTION, "previous_operator_id": "op-1"},
    "order.reassigned": {
        **ORDER,
        **ACTION,
        "previous_operator_id": "op-0",
        "previous_operator_name": "Anna",
        "operator_telegram_user_id": 111,
        "previous_operator_telegram_user_id": 222,
    },
    "order.assigned": {
        **ORDER,
        **ACTION,
        "lapses_at": "2026-11-21T15:05:00+00:00",
        "operator_telegram_user_id": 111,
    },
    "order.assignment_lapsed": {
        **ORDER,
        **ACTION,
        "previous_operator_id": "op-1",
        "previous_operator_name": "Boris",
        "previous_operator_telegram_user_id": 111,
    },
    "order.escalated": {**ORDER, **ACTION, **ESCALATION, "reason": "other", "transaction": None},
    "order.escalation_commented": {**ORDER, **ACTION, **ESCALATION},
    "order.escalation_resolved": {**ORDER, **ACTION, **ESCALATION, "escalation_status": "resolved"},
    "customer.email_code_requested": {
        "customer_id": "cus-1",
        "locale": "ru",
        "expires_at": "2026-11-21T15:10:00+00:00",
        **SEALED,
    },
    "customer.erased": {"customer_id": "cus-1", "erased_at": "2026-11-21T15:00:00+00:00"},
    "order.closed": {"order_id": "ord-1", "status": "completed", "currency": "BTC", "network": "bitcoin"},
    "wallet.assigned": {
        "order_id": "ord-1",
        "currency": "BTC",
        "network": "bitcoin",
        "address": "bc1qaddress",
        "assigned_at": "2026-11-21T15:00:00+00:00",
    },
    "pool.low": POOL,
    "pool.recovered": {**POOL, "free": 6, "reserved": 26, "free_percent": "18.75", "level": "ok"},
    "outbox.dead_lettered": {
        "service": "order-api",
        "dead": 3,
        "events": [{"destination": "wallet-pool", "event_type": "order.closed", "dead": 3}],
        "oldest_dead_at": "2026-12-06T07:30:00+00:00",
        "observed_at": "2026-12-06T08:00:00+00:00",
    },
    "outbox.dead_cleared": {"service": "order-api", "dead": 0, "observed_at": "2026-12-06T08:00:00+00:00"},
    "queue.backlogged": {**QUEUE, "reasons": ["length", "wait"]},
    "queue.cleared": {**QUEUE, "queued": 2, "oldest_wait_seconds": 30.5},
    "orders.untouched": {
        "count": 2,
        "oldest_order_id": "ord-1",
        "oldest_address_assigned_at": "2026-12-06T07:20:00+00:00",
        "threshold_minutes": 30,
        "observed_at": "2026-12-06T08:00:00+00:00",
    },
    "orders.untouched_cleared": {"count": 0, "observed_at": "2026-12-06T08:00:00+00:00"},
    "api.degraded": {
        **API,
        "error_threshold_percent": 5.0,
        "p95_threshold_seconds": 1.0,
        "errors_alert": True,
        "slow_routes": [{"route": "GET /v1/orders/{order_id}", "p95_seconds": 2.5, "requests": 30}],
    },
    "api.recovered": {**API, "errors": 0, "error_percent": 0.0},
}


def test_every_event_has_a_sample_here() -> None:
    assert set(PAYLOADS) == set(EVENTS)


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_a_payload_read_and_written_again_is_the_same_json(event_type: str) -> None:
    payload = PAYLOADS[event_type]
    event = EVENTS[event_type].model_validate(json.loads(json.dumps(payload)))
    assert event.payload() == payload
    assert json.dumps(event.payload(), sort_keys=True) == json.dumps(payload, sort_keys=True)


@pytest.mark.parametrize("event_type", sorted(EVENTS))
def test_every_event_says_what_it_is_who_sends_it_and_who_reads_it(event_type: str) -> None:
    event = EVENTS[event_type]
    assert event.event_type == event_type
    assert event.event_version >= 1
    assert event.producers
    assert event.consumers
    assert event.__doc__
    assert set(event.producers).isdisjoint(event.consumers)


def test_money_and_times_travel_as_the_services_always_wrote_them() -> None:
    created = OrderCreated.model_validate(
        {**ORDER, "amount": Decimal("0.0150"), "expires_at": datetime(2026, 11, 21, 15, 30, tzinfo=UTC)}
    )
    assert created.payload()["amount"] == "0.0150"  # str(Decimal): no float, no lost digits
    assert created.payload()["expires_at"] == "2026-11-21T15:30:00+00:00"  # isoformat, not pydantic's "Z"
    assert isinstance(created.amount, Decimal)
    tiny = {"deposit_amount": Decimal("4E-7"), "payout_amount": Decimal("1E+2"), "payout_network_fee": None}
    record = OrderTransaction.model_validate(tiny).model_dump(mode="json")
    assert (record["deposit_amount"], record["payout_amount"]) == ("0.0000004", "100")  # plain, no exponent


def test_personal_data_travels_only_sealed() -> None:
    without = OrderCreated.model_validate(ORDER).payload()
    assert "sealed" not in without
    assert "_redact_after_delivery" not in without
    assert "customer_email" not in without
    sealed = OrderCreated.model_validate({**ORDER, **SEALED}).payload()
    assert (sealed["sealed"], sealed["_redact_after_delivery"]) == (SEALED["sealed"], ["sealed"])
    opened = OrderCreated.model_validate({**ORDER, "customer_email": "anna@example.com"})
    assert opened.customer_email == "anna@example.com"  # what the notifier reads once it opened `sealed`


def test_a_payload_missing_a_field_or_of_the_wrong_type_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as missing:
        ORDER_EVENTS["order.taken"].model_validate({k: v for k, v in ORDER.items() if k != "version"})
    assert [error["loc"] for error in missing.value.errors()] == [("version",)]
    with pytest.raises(ValidationError) as level:
        PoolLow.model_validate({**POOL, "level": "half", "free": "many"})
    assert sorted(error["loc"] for error in level.value.errors()) == [("free",), ("level",)]


def test_fields_a_consumer_does_not_know_are_ignored() -> None:
    closed = OrderClosed.model_validate({**PAYLOADS["order.closed"], "closed_by": "operator:op-1"})
    assert "closed_by" not in closed.payload()
