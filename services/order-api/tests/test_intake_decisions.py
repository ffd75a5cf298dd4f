"""The decisions of order intake on their own (``order_api.orders.intake``): no database, no network, no
clock. What they decide is what both intake paths store (``test_intake_paths.py`` pins the two together)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from order_api.clients.wallet_pool import Allocation
from order_api.orders.errors import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    OrderInputError,
)
from order_api.orders.intake import (
    INTAKE_GRACE,
    IdempotencyClaim,
    announcement,
    created_response,
    decide_priority,
    judge_earlier_use,
    new_order,
    open_order_caps,
    opening_entry,
    request_fingerprint,
    settlement,
    validate_order,
)
from order_api.orders.models import Order, Priority
from order_api.orders.schemas import OrderCreate
from order_api.settings import DEFAULT_CURRENCIES, PriorityRules

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BTC = DEFAULT_CURRENCIES["BTC"]
PAYOUT_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
DEPOSIT = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


def request(**overrides: Any) -> OrderCreate:
    body = {
        "email": "customer@example.com",
        "from_currency": "BTC",
        "to_currency": "USDT",
        "amount": "0.05",
        "payout_address": PAYOUT_USDT,
        **overrides,
    }
    return OrderCreate.model_validate(body)


def placed(**overrides: Any) -> Order:
    """A new order as intake makes it, before anything is stored."""
    body = request(**overrides)
    order = new_order(
        order_id=str(uuid.uuid4()),
        request=body,
        valid=validate_order(body, currencies=DEFAULT_CURRENCIES),
        payout_address_sealed="sealed",
        client_ip="203.0.113.7",
        mailbox_proven=False,
        now=NOW,
        rules=BTC,
    )
    order.customer_id = "customer-1"
    order.priority = Priority.NORMAL.value
    return order


def field_of(error: pytest.ExceptionInfo[OrderInputError]) -> list[str]:
    return [e["field"] for e in error.value.extra["errors"]]


# -- Validation ------------------------------------------------------------------------------------------


def test_a_valid_order_gets_its_default_networks_and_its_payout_address_normalised() -> None:
    valid = validate_order(request(payout_address=f"  {PAYOUT_USDT} "), currencies=DEFAULT_CURRENCIES)
    assert (valid.from_network, valid.to_network) == ("bitcoin", "TRC20")
    assert valid.payout_address == PAYOUT_USDT
    assert valid.amount == Decimal("0.05")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"from_currency": "DOGE"}, "from_currency", "use one of BTC, ETH, USDT"),
        ({"to_currency": "XRP"}, "to_currency", "use one of BTC, ETH, USDT"),
        ({"to_currency": "BTC", "payout_address": DEPOSIT}, "to_currency", "must differ"),
        ({"amount": "0"}, "amount", "positive"),
        ({"amount": "0.123456789"}, "amount", "at most 8 decimal places for BTC"),
        # 29 digits: its tail counted exactly, not rounded away by a 28-digit normalize()
        ({"amount": "12345678901.000000000000000001"}, "amount", "at most 8 decimal places for BTC"),
        ({"amount": "0.00001"}, "amount", "between 0.0001 and 10 BTC"),
        ({"amount": "11"}, "amount", "between 0.0001 and 10 BTC"),
        ({"payout_address": PAYOUT_USDT[:-1] + "T"}, "payout_address", "typo"),
        ({"to_network": "SOLANA"}, "to_network", "SOLANA"),
    ],
)
def test_every_invalid_order_is_refused_naming_its_field(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(OrderInputError) as refused:
        validate_order(request(**overrides), currencies=DEFAULT_CURRENCIES)
    assert field_of(refused) == [field]
    assert message in str(refused.value.detail)


def test_the_fingerprint_of_a_retry_is_the_same_and_another_body_differs() -> None:
    assert request_fingerprint(request()) == request_fingerprint(request())
    assert request_fingerprint(request()) != request_fingerprint(request(amount="0.06"))


# -- Priority, expiry, limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "amount", "completed", "expected"),
    [
        ("BTC", "0.05", 0, Priority.NORMAL),
        ("BTC", "0.2", 0, Priority.PRIORITY),
        ("BTC", "1", 0, Priority.VIP),
        ("BTC", "0.05", 3, Priority.PRIORITY),
        ("BTC", "0.05", 20, Priority.VIP),
        ("LTC", "1000", 0, Priority.NORMAL),  # no amount rule for a currency: only history counts
    ],
)
def test_large_amounts_and_customers_with_a_history_jump_the_queue(
    currency: str, amount: str, completed: int, expected: Priority
) -> None:
    priority = decide_priority(
        rules=PriorityRules(), currency=currency, amount=Decimal(amount), completed_orders=completed
    )
    assert priority == expected


def test_a_new_order_awaits_its_address_and_expires_like_a_queued_one() -> None:
    order = placed()
    assert (order.status, order.allocation_state, order.version) == ("awaiting_address", "pending", 1)
    assert order.created_at == order.updated_at == NOW
    assert order.expires_at == NOW + timedelta(minutes=BTC.queued_minutes)
    assert (order.to_network, order.payout_address_sealed, order.client_ip) == (
        "TRC20",
        "sealed",
        "203.0.113.7",
    )


def test_a_customer_with_just_an_email_is_told_how_to_order_more_a_proven_one_is_not() -> None:
    by_email = open_order_caps(per_customer=3, per_network=20, mailbox_proven=False)
    proven = open_order_caps(per_customer=3, per_network=20, mailbox_proven=True)
    assert "sign in with an emailed code" in str(by_email.customer_refusal().detail)
    assert "sign in" not in str(proven.customer_refusal().detail)
    for caps in (by_email, proven):
        assert caps.customer_refusal().extra == {"limit": 3}
        assert caps.customer_refusal().status == 409
        assert caps.network_refusal().extra == {"limit": 20}
        assert "network" in str(caps.network_refusal().detail)


# -- Retries ---------------------------------------------------------------------------------------------

CLAIM = IdempotencyClaim(owner="index", key="checkout-1", fingerprint="abc")


def judge(*, fingerprint: str = "abc", answered: bool = False, age: timedelta) -> str:
    return judge_earlier_use(
        claim=CLAIM,
        stored_fingerprint=fingerprint,
        answered=answered,
        created_at=NOW - age,
        now=NOW,
        budget_seconds=2.0,
    )


def test_a_key_reused_with_another_body_is_refused_naming_the_header() -> None:
    with pytest.raises(IdempotencyKeyReusedError) as refused:
        judge(fingerprint="other", answered=True, age=timedelta(hours=1))
    assert [e["field"] for e in refused.value.extra["errors"]] == ["Idempotency-Key"]


def test_an_answered_request_is_replayed_whenever_the_retry_comes() -> None:
    assert judge(answered=True, age=timedelta(0)) == "replay"
    assert judge(answered=True, age=timedelta(days=1)) == "replay"


def test_a_request_that_may_still_run_makes_the_retry_wait_and_one_that_cannot_is_recovered() -> None:
    with pytest.raises(IdempotencyKeyInFlightError) as waiting:
        judge(age=timedelta(seconds=1))
    # It can run for the budget (2 s) and the grace beyond it: retry once both have passed.
    assert waiting.value.extra == {"retry_after_seconds": 11}
    with pytest.raises(IdempotencyKeyInFlightError) as almost:
        judge(age=timedelta(seconds=2) + INTAKE_GRACE - timedelta(milliseconds=100))
    assert almost.value.extra == {"retry_after_seconds": 1}
    assert judge(age=timedelta(seconds=2) + INTAKE_GRACE + timedelta(milliseconds=1)) == "recover"


# -- wallet-pool's answer, history, announcement, answer -------------------------------------------------


def allocated(address: str | None = DEPOSIT) -> Allocation:
    return Allocation(order_id="o", status="allocated", address=address)


def queued(position: int = 4, wait: float | None = 90.6) -> Allocation:
    return Allocation(order_id="o", status="queued", position=position, estimated_wait_seconds=wait)


def test_an_address_moves_a_waiting_order_to_awaiting_deposit_with_the_deposit_deadline() -> None:
    for status in ("awaiting_address", "queued"):
        settled = settlement(status=status, allocation=allocated(), now=NOW, rules=BTC)
        assert settled is not None
        assert settled.to == "awaiting_deposit"
        assert settled.changes == {
            "deposit_address": DEPOSIT,
            "allocation_state": "allocated",
            "address_assigned_at": NOW,
            "queue_position": None,
            "estimated_wait_seconds": None,
            "expires_at": NOW + timedelta(minutes=BTC.awaiting_deposit_minutes),
        }
        entry = settled.entry(from_status=status)
        assert entry is not None
        assert (entry.from_status, entry.to_status, entry.actor.label, entry.actor.channel) == (
            status,
            "awaiting_deposit",
            "system:wallet-pool",
            "system",
        )
        assert entry.details == {"deposit_address": DEPOSIT}


def test_a_queue_place_queues_an_order_awaiting_its_address_and_only_moves_a_queued_one() -> None:
    settled = settlement(status="awaiting_address", allocation=queued(), now=NOW, rules=BTC)
    assert settled is not None
    assert settled.to == "queued"
    assert settled.changes == {
        "allocation_state": "queued",
        "queue_position": 4,
        "estimated_wait_seconds": 91,
    }
    entry = settled.entry(from_status="awaiting_address")
    assert entry is not None
    assert (entry.to_status, entry.details) == ("queued", {})

    moved = settlement(status="queued", allocation=queued(position=2, wait=None), now=NOW, rules=BTC)
    assert moved is not None
    assert moved.to is None  # a new place is no change of status: no version, no history
    assert moved.changes == {
        "allocation_state": "queued",
        "queue_position": 2,
        "estimated_wait_seconds": None,
    }
    assert moved.entry(from_status="queued") is None


@pytest.mark.parametrize("status", ["awaiting_deposit", "in_progress", "cancelled", "expired"])
def test_an_answer_for_an_order_no_longer_waiting_for_an_address_changes_nothing(status: str) -> None:
    for answer in (allocated(), queued()):
        assert settlement(status=status, allocation=answer, now=NOW, rules=BTC) is None


def test_no_answer_a_release_or_an_allocation_without_address_changes_nothing() -> None:
    released = Allocation(order_id="o", status="released")
    for answer in (None, released, allocated(address=None)):
        assert settlement(status="awaiting_address", allocation=answer, now=NOW, rules=BTC) is None


def test_every_order_opens_its_history_as_placed_by_its_customer() -> None:
    entry = opening_entry(customer_id="customer-1")
    assert (entry.from_status, entry.to_status, entry.details) == (None, "awaiting_address", {})
    assert (entry.actor.label, entry.actor.channel) == ("customer:customer-1", "rest")


def test_the_answer_shows_the_order_its_payout_address_and_the_session_token_once() -> None:
    order = placed()
    response = created_response(order, payout_address=PAYOUT_USDT, session_token="cs_token")
    assert response.status_code == 201
    assert response.body == {
        "id": order.id,
        "status": "awaiting_address",
        "from_currency": "BTC",
        "from_network": "bitcoin",
        "to_currency": "USDT",
        "to_network": "TRC20",
        "amount": "0.05",
        "payout_address": PAYOUT_USDT,
        "deposit_address": None,
        "queue_position": None,
        "estimated_wait_seconds": None,
        "priority": "normal",
        "expires_at": "2026-03-01T16:00:00Z",
        "created_at": "2026-03-01T12:00:00Z",
        "updated_at": "2026-03-01T12:00:00Z",
        "version": 1,
        "transaction": None,
        "session_token": "cs_token",
    }
    signed_in = created_response(order, payout_address=PAYOUT_USDT, session_token=None)
    assert signed_in.body["session_token"] is None


def test_the_announcement_is_order_created_to_the_notifier_without_the_customers_data() -> None:
    order = placed()
    announced = announcement(order)
    assert (announced.destination, announced.event_type, announced.aggregate_id) == (
        "notifier",
        "order.created",
        order.id,
    )
    payload = announced.event(sealed_email={}).payload()
    assert payload["order_id"] == order.id
    assert (payload["status"], payload["amount"], payload["version"]) == ("awaiting_address", "0.05", 1)
    assert payload["expires_at"] == "2026-03-01T16:00:00+00:00"
    # The email is added by whoever stores the event, sealed; the payout address never travels.
    text = json.dumps(payload)
    assert "customer@example.com" not in text
    assert PAYOUT_USDT not in text
