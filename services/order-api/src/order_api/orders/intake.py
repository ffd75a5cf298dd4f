"""The decisions of order intake, as pure functions: no database, no network, no clock (the moment is an
argument), so each can be read and tested on its own.

``service.create_order`` asks these what to do; ``intake_persistence`` stores what they decided, on the fast
path (a new customer's first order on PostgreSQL) or the general one. Both paths store the same decision:
``tests/test_intake_paths.py`` pins them to the same record.

- Validation: ``validate_order`` (every problem names its field).
- Priority: ``decide_priority``.
- Limits: ``open_order_caps`` (which open orders count against a new order, and the refusal when full).
- Expiry: ``queued_expiry`` (until the order has its address) and ``deposit_expiry`` (once it has).
- Retries: ``judge_earlier_use`` of an ``Idempotency-Key``.
- wallet-pool's answer: ``settlement`` (what it changes on the order, and the history row it writes).
- The answer: ``created_response``; the events: ``announcement`` (``order.created``), ``opening_entry`` and
  ``Settlement.entry`` (the order's history).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

from coin_addresses import InvalidAddressError, UnsupportedNetworkError, default_network, validate_address
from desk_contracts.events import OrderCreated as OrderCreatedEvent
from order_api.clients.wallet_pool import Allocation
from order_api.orders.errors import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    OpenOrderLimitError,
    OrderInputError,
)
from order_api.orders.lifecycle import SYSTEM_WALLET_POOL, Actor, exchange_fields, order_fields
from order_api.orders.models import AllocationState, Order, OrderStatus, Priority
from order_api.orders.schemas import OrderCreate, OrderCreated
from order_api.orders.transactions import transaction_read
from order_api.settings import CurrencyRules, PriorityRules
from servicekit.db import decimal_places

INTAKE_GRACE = timedelta(seconds=10)
"""How long beyond its wallet-pool budget an intake request may take (database waits, the rate limit):
an order older than both, still unannounced, was left by a request that died."""

WAITING = (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED)
"""The statuses of an order still waiting for its deposit address: the ones wallet-pool's answer settles."""


def field_error(field: str, message: str) -> OrderInputError:
    """``422`` naming the field of the request that is wrong."""
    return OrderInputError(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": "invalid"}]
    )


# -- Validation ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValidOrder:
    """What validation makes of a request: the networks (defaults filled in), the payout address in its
    normalised form, and the amount."""

    from_network: str
    to_network: str
    payout_address: str
    amount: Decimal


def _currency_rules(currencies: Mapping[str, CurrencyRules], currency: str, field: str) -> CurrencyRules:
    rules = currencies.get(currency)
    if rules is None:
        raise field_error(field, f"unsupported currency; use one of {', '.join(sorted(currencies))}")
    return rules


def _network(currency: str, network: str | None, field: str) -> str:
    try:
        return network if network is not None else default_network(currency)
    except UnsupportedNetworkError as exc:
        raise field_error(field, str(exc)) from exc


def validate_order(request: OrderCreate, *, currencies: Mapping[str, CurrencyRules]) -> ValidOrder:
    """Check currencies, networks, amount and payout address against the currencies the desk trades.
    Every problem names its field."""
    rules = _currency_rules(currencies, request.from_currency, "from_currency")
    _currency_rules(currencies, request.to_currency, "to_currency")
    if request.from_currency == request.to_currency:
        raise field_error("to_currency", "must differ from from_currency")
    from_network = _network(request.from_currency, request.from_network, "from_network")
    to_network = _network(request.to_currency, request.to_network, "to_network")
    amount = request.amount
    if not amount.is_finite() or amount <= 0:
        raise field_error("amount", "must be a positive number")
    if decimal_places(amount) > rules.precision:
        raise field_error("amount", f"at most {rules.precision} decimal places for {request.from_currency}")
    if amount < rules.min_amount or amount > rules.max_amount:
        raise field_error(
            "amount", f"must be between {rules.min_amount} and {rules.max_amount} {request.from_currency}"
        )
    try:
        payout = validate_address(
            currency=request.to_currency, network=to_network, address=request.payout_address
        )
    except UnsupportedNetworkError as exc:
        raise field_error("to_network", str(exc)) from exc
    except InvalidAddressError as exc:
        raise field_error("payout_address", exc.reason) from exc
    return ValidOrder(from_network=from_network, to_network=to_network, payout_address=payout, amount=amount)


def request_fingerprint(request: OrderCreate) -> str:
    """The hash an ``Idempotency-Key`` is stored with: the same key with another body is refused."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_order(
    *,
    order_id: str,
    request: OrderCreate,
    valid: ValidOrder,
    payout_address_sealed: str,
    client_ip: str,
    mailbox_proven: bool,
    now: datetime,
    rules: CurrencyRules,
) -> Order:
    """The order a valid request becomes, before it is stored or has its customer, session and priority:
    ``awaiting_address``, its allocation pending, expiring as a queued order does (``queued_expiry``)."""
    return Order(
        id=order_id,
        from_currency=request.from_currency,
        from_network=valid.from_network,
        to_currency=request.to_currency,
        to_network=valid.to_network,
        amount=valid.amount,
        payout_address_sealed=payout_address_sealed,
        locale=request.locale,
        status=OrderStatus.AWAITING_ADDRESS.value,
        allocation_state=AllocationState.PENDING.value,
        client_ip=client_ip,
        mailbox_proven=mailbox_proven,
        version=1,
        created_at=now,
        updated_at=now,
        expires_at=queued_expiry(created_at=now, rules=rules),
    )


# -- Priority, expiry ----------------------------------------------------------------------------------


def decide_priority(
    *, rules: PriorityRules, currency: str, amount: Decimal, completed_orders: int
) -> Priority:
    """VIP and priority orders jump the wait queue: large amounts, or customers with a history. A new
    customer has completed no orders."""
    if (
        amount >= rules.vip_amount.get(currency, Decimal("Infinity"))
        or completed_orders >= rules.vip_completed_orders
    ):
        return Priority.VIP
    if (
        amount >= rules.priority_amount.get(currency, Decimal("Infinity"))
        or completed_orders >= rules.priority_completed_orders
    ):
        return Priority.PRIORITY
    return Priority.NORMAL


def queued_expiry(*, created_at: datetime, rules: CurrencyRules) -> datetime:
    """When an order that has no deposit address yet (awaiting it, or queued for one) expires."""
    return created_at + timedelta(minutes=rules.queued_minutes)


def deposit_expiry(*, assigned_at: datetime, rules: CurrencyRules) -> datetime:
    """When an order expires unless paid, once it has its deposit address."""
    return assigned_at + timedelta(minutes=rules.awaiting_deposit_minutes)


def intake_abandoned_before(*, now: datetime, budget_seconds: float) -> datetime:
    """Orders created before this moment are no longer in the hands of the request that made them."""
    return now - timedelta(seconds=budget_seconds) - INTAKE_GRACE


# -- Limits ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenOrderCaps:
    """The open orders a new order is counted with, and how many of each may be held.

    Per customer, only what the caller has proven counts: with a full session (``mailbox_proven``: the
    mailbox proven by an emailed code), the customer's orders placed the same way; with just the email, the
    orders placed with just that email from the same client network. Whoever merely knows an email cannot
    fill the cap of its owner elsewhere, and a proven customer can always order up to the cap. Per client
    network, every open order of the network counts: pool draining stays bounded by that cap and the rate
    limit. A new customer holds no orders, so only the network's cap can refuse their first one."""

    per_customer: int
    per_network: int
    mailbox_proven: bool

    def customer_refusal(self) -> OpenOrderLimitError:
        limit = self.per_customer
        return OpenOrderLimitError(
            f"A customer may hold {limit} open orders; finish or cancel one first."
            if self.mailbox_proven
            else f"This email holds {limit} open orders from this network; finish or cancel one first, or "
            "sign in with an emailed code (POST /v1/auth/email-code).",
            extra={"limit": limit},
        )

    def network_refusal(self) -> OpenOrderLimitError:
        return OpenOrderLimitError(
            "Too many open orders from this network address.", extra={"limit": self.per_network}
        )


def open_order_caps(*, per_customer: int, per_network: int, mailbox_proven: bool) -> OpenOrderCaps:
    return OpenOrderCaps(per_customer=per_customer, per_network=per_network, mailbox_proven=mailbox_proven)


def check_signed_in_customer(*, signed_in: str | None, customer_id: str) -> None:
    """A signed-in customer orders for their own email only."""
    if signed_in is not None and signed_in != customer_id:
        raise field_error("email", "does not match the signed-in customer")


# -- Retries (Idempotency-Key) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """The ``Idempotency-Key`` of a request: whose (the email's blind index), the key, and the body's hash."""

    owner: str
    key: str
    fingerprint: str


def judge_earlier_use(
    *,
    claim: IdempotencyClaim,
    stored_fingerprint: str,
    answered: bool,
    created_at: datetime,
    now: datetime,
    budget_seconds: float,
) -> Literal["replay", "recover"]:
    """What a request does with a key an earlier request claimed: ``replay`` that request's stored answer;
    ``recover`` what it left (it died, as it can no longer be running). Another body is ``422``; a request
    that may still be running is ``409`` with ``Retry-After``."""
    if stored_fingerprint != claim.fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was already used with a different request body.",
            errors=[
                {"field": "Idempotency-Key", "message": "reused with a different body", "type": "reused"}
            ],
        )
    if answered:
        return "replay"
    abandoned_before = intake_abandoned_before(now=now, budget_seconds=budget_seconds)
    if created_at > abandoned_before:
        wait = math.ceil((created_at - abandoned_before).total_seconds())
        raise IdempotencyKeyInFlightError(
            "The first request with this Idempotency-Key is still running; retry it shortly.",
            extra={"retry_after_seconds": max(1, wait)},
        )
    return "recover"


# -- wallet-pool's answer, the history, the announcement and the answer -----------------------------------


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of an order's history (``order_event``): from which status to which, by whom."""

    from_status: str | None
    to_status: str
    actor: Actor
    details: dict[str, Any] = field(default_factory=dict)


def opening_entry(*, customer_id: str) -> HistoryEntry:
    """The first row of every order's history: its customer placed it (``awaiting_address``)."""
    return HistoryEntry(
        from_status=None,
        to_status=OrderStatus.AWAITING_ADDRESS.value,
        actor=Actor(kind="customer", id=customer_id),
    )


@dataclass(frozen=True, slots=True)
class Settlement:
    """What wallet-pool's answer does to an order still waiting for its address: the status it moves to
    (``None``: it stays, a queued order's new place), the columns that change besides (status, ``version``
    and ``updated_at`` go with a change of status) and the history row's details."""

    actor: ClassVar[Actor] = SYSTEM_WALLET_POOL
    to: OrderStatus | None
    changes: dict[str, Any]
    details: dict[str, Any]

    def entry(self, *, from_status: str) -> HistoryEntry | None:
        """The history row the settlement writes: one for a change of status, by wallet-pool."""
        if self.to is None:
            return None
        return HistoryEntry(
            from_status=from_status, to_status=self.to.value, actor=self.actor, details=self.details
        )


def settlement(
    *, status: str, allocation: Allocation | None, now: datetime, rules: CurrencyRules
) -> Settlement | None:
    """What wallet-pool's (checked) answer changes on an order that is ``status``: an address moves an order
    awaiting it (or queued for it) to ``awaiting_deposit``, with the deposit deadline; a queue place moves an
    order awaiting its address to ``queued``, or updates the place of a queued one. ``None``: nothing (no
    answer, or the order no longer waits for an address; see ``intake_persistence.apply_allocation`` for an
    address that reaches a closed order)."""
    if allocation is None or status not in WAITING:
        return None
    if allocation.status == "allocated" and allocation.address:
        return Settlement(
            to=OrderStatus.AWAITING_DEPOSIT,
            changes={
                "deposit_address": allocation.address,
                "allocation_state": AllocationState.ALLOCATED.value,
                "address_assigned_at": now,
                "queue_position": None,
                "estimated_wait_seconds": None,
                "expires_at": deposit_expiry(assigned_at=now, rules=rules),
            },
            details={"deposit_address": allocation.address},
        )
    if allocation.status == "queued":
        wait = allocation.estimated_wait_seconds
        return Settlement(
            to=OrderStatus.QUEUED if status == OrderStatus.AWAITING_ADDRESS else None,
            changes={
                "allocation_state": AllocationState.QUEUED.value,
                "queue_position": allocation.position,
                "estimated_wait_seconds": round(wait) if wait is not None else None,
            },
            details={},
        )
    return None


@dataclass(frozen=True, slots=True)
class Announcement:
    """The event intake emits once per order: ``order.created`` to the notifier, with the order as it is
    when announced. The adapter adds the customer's email, sealed with the event keys
    (``DataProtection.sealed_event_fields``): never in clear in the outbox."""

    destination: ClassVar[str] = "notifier"
    event_type: ClassVar[str] = OrderCreatedEvent.event_type
    aggregate_id: str
    fields: dict[str, Any]

    def event(self, *, sealed_email: Mapping[str, Any]) -> OrderCreatedEvent:
        """The event as it is written to the outbox, with the sealed email fields the adapter made."""
        return OrderCreatedEvent(**self.fields, **sealed_email)


def announcement(order: Order) -> Announcement:
    return Announcement(aggregate_id=order.id, fields=order_fields(order))


@dataclass(frozen=True, slots=True)
class OrderResponse:
    """What ``POST /v1/orders`` answers (a replay of a stored answer keeps its original status)."""

    status_code: int
    body: dict[str, Any]
    replayed: bool = False
    """The stored answer to an earlier request with the same ``Idempotency-Key``: no new order."""


def read_fields(order: Order, *, payout_address: str | None) -> dict[str, Any]:
    """The order as its customer sees it (``OrderRead``), with its payout address opened by the caller."""
    return {
        "id": order.id,
        "status": order.status,
        **exchange_fields(order),
        "payout_address": payout_address,
        "deposit_address": order.deposit_address,
        "queue_position": order.queue_position,
        "estimated_wait_seconds": order.estimated_wait_seconds,
        "priority": order.priority,
        "expires_at": order.expires_at,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "version": order.version,
        "transaction": transaction_read(order),
    }


def created_response(order: Order, *, payout_address: str | None, session_token: str | None) -> OrderResponse:
    """``201`` with the order as it is now, and the session token when this request opened a session."""
    created = OrderCreated(**read_fields(order, payout_address=payout_address), session_token=session_token)
    return OrderResponse(status_code=201, body=created.model_dump(mode="json"))
