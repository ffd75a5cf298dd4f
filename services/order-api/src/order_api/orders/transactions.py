"""The transaction record on an order: the deposit the customer sent, the payout the desk sent, and how the
deposit compared with the amount ordered (``exact``, ``underpaid``, ``overpaid``).

An operator records it when completing the order (``POST /v1/operator/orders/{id}/status``), or records the
deposit alone when holding the order for support over a payment they cannot settle (``escalate`` with a
``deposit``); a later completion without a deposit then reuses the one recorded. Hashes are checked against
the chain's format (``coin_addresses.validate_transaction_hash``), amounts against the currency's precision.
The record lives in the order's own columns (``Order.deposit_*``, ``payout_*``, ``payment_outcome``).

A transaction hash is personal data: on a block explorer the payout's hash shows the payout address (which is
sealed). The hashes stay in the order's columns (cleared when the customer is erased) and in the completion
event the notifier emails from (masked in the outbox once delivered); the order's history and the audit log
carry the amounts and the outcome only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from coin_addresses import InvalidTransactionHashError, validate_transaction_hash
from order_api.orders.errors import PaymentMismatchError, TransactionInvalidError, TransactionRequiredError
from order_api.orders.models import Order, PaymentOutcome
from order_api.orders.schemas import (
    DepositCreate,
    DepositRead,
    PayoutCreate,
    PayoutRead,
    TransactionCreate,
    TransactionRead,
)
from order_api.settings import CurrencyRules
from servicekit.db import decimal_places, strip_trailing_zeros, utcnow
from servicekit.outbox import REDACT_AFTER_DELIVERY

ADJUSTED_PAYOUT = "adjusted_payout"


def invalid(field: str, message: str) -> TransactionInvalidError:
    """``422`` naming the field of the record that is wrong."""
    return TransactionInvalidError(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": "invalid"}]
    )


def _tx_hash(value: str, *, network: str, field: str) -> str:
    try:
        return validate_transaction_hash(network=network, tx_hash=value)
    except InvalidTransactionHashError as exc:
        raise invalid(field, exc.reason) from exc


def _amount(value: Decimal, *, currency: str, currencies: Mapping[str, CurrencyRules], field: str) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise invalid(field, "must be a positive number")
    rules = currencies.get(currency)
    if rules is not None and decimal_places(value) > rules.precision:
        raise invalid(field, f"at most {rules.precision} decimal places for {currency}")
    return value


def deposit_columns(
    order: Order, deposit: DepositCreate, *, currencies: Mapping[str, CurrencyRules], field: str
) -> dict[str, Any]:
    """The order's ``deposit_*`` columns for a valid ``deposit`` (``field`` names it in errors)."""
    return {
        "deposit_tx_hash": _tx_hash(deposit.tx_hash, network=order.from_network, field=f"{field}.tx_hash"),
        "deposit_amount": _amount(
            deposit.amount, currency=order.from_currency, currencies=currencies, field=f"{field}.amount"
        ),
        "deposit_seen_at": deposit.seen_at or utcnow(),
    }


def _payout_columns(
    order: Order, payout: PayoutCreate, *, currencies: Mapping[str, CurrencyRules]
) -> dict[str, Any]:
    fee = payout.network_fee
    return {
        "payout_tx_hash": _tx_hash(
            payout.tx_hash, network=order.to_network, field="transaction.payout.tx_hash"
        ),
        "payout_amount": _amount(
            payout.amount,
            currency=order.to_currency,
            currencies=currencies,
            field="transaction.payout.amount",
        ),
        "payout_network_fee": None
        if fee is None
        else _amount(
            fee, currency=order.to_currency, currencies=currencies, field="transaction.payout.network_fee"
        ),
    }


def outcome(*, ordered: Decimal, received: Decimal) -> PaymentOutcome:
    if received == ordered:
        return PaymentOutcome.EXACT
    return PaymentOutcome.UNDERPAID if received < ordered else PaymentOutcome.OVERPAID


@dataclass(frozen=True, slots=True)
class Completion:
    """What completing an order writes to it (``changes``), tells its history and audit (``details``: no
    hashes) and tells the notifier (``extra``: with the hashes, masked in the outbox once delivered)."""

    changes: dict[str, Any]
    details: dict[str, Any]
    extra: dict[str, Any]


def completion(
    order: Order,
    transaction: TransactionCreate | None,
    *,
    required: bool,
    currencies: Mapping[str, CurrencyRules],
) -> Completion:
    """Check the record a completion sends and what it writes. Without one: ``422 transaction_required``
    when the desk requires it (``ORDER_API_COMPLETION_TRANSACTION_REQUIRED``), else nothing is recorded. A
    deposit that differs from the order's amount is ``409 payment_mismatch`` unless the payout was adjusted."""
    if transaction is None:
        if required:
            raise TransactionRequiredError(
                "transaction: record the deposit and the payout to complete the order",
                errors=[
                    {
                        "field": "transaction",
                        "message": "the deposit and the payout are required to complete an order",
                        "type": "missing",
                    }
                ],
            )
        return Completion(changes={}, details={}, extra={})
    changes: dict[str, Any] = {}  # without a deposit, the one a hold recorded is reused as it is
    received = order.deposit_amount
    if transaction.deposit is not None:
        changes = deposit_columns(
            order, transaction.deposit, currencies=currencies, field="transaction.deposit"
        )
        received = changes["deposit_amount"]
    if received is None:
        raise invalid("transaction.deposit", "required: no deposit is recorded on this order yet")
    changes.update(_payout_columns(order, transaction.payout, currencies=currencies))
    result = outcome(ordered=order.amount, received=received)
    if result != PaymentOutcome.EXACT and transaction.payment_difference != ADJUSTED_PAYOUT:
        raise PaymentMismatchError(
            f"{received} {order.from_currency} arrived for an order of {order.amount}: adjust the payout "
            '(`payment_difference: "adjusted_payout"`) or hold the order for support.',
            extra={
                "ordered": _plain(order.amount),
                "received": _plain(received),
                "difference": result.value,
            },
        )
    changes["payment_outcome"] = result.value
    record = recorded(order, changes)
    return Completion(
        changes=changes,
        details={"transaction": without_hashes(record)},
        extra={"transaction": record, REDACT_AFTER_DELIVERY: ["transaction"]},
    )


def _plain(amount: Decimal) -> str:
    return format(strip_trailing_zeros(amount), "f")


def _wire(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _plain(value)
    return value.isoformat() if isinstance(value, datetime) else value


def recorded(order: Order, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record (with ``changes`` applied) as the order's history, audit log and events carry it
    (``desk_contracts.events.OrderTransaction``: decimal strings, ISO times)."""
    values = {name: getattr(order, name) for name in _COLUMNS} | dict(changes or {})
    record = {name: _wire(values[name]) for name in _COLUMNS if name != "payment_outcome"}
    record["payment"] = values["payment_outcome"]
    return record


HASHES = ("deposit_tx_hash", "payout_tx_hash")


def without_hashes(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` (:func:`recorded`) without its transaction hashes: the amounts and the outcome."""
    return {name: value for name, value in record.items() if name not in HASHES}


_COLUMNS = (
    "deposit_tx_hash",
    "deposit_amount",
    "deposit_seen_at",
    "payout_tx_hash",
    "payout_amount",
    "payout_network_fee",
    "payment_outcome",
)


def transaction_read(order: Order) -> TransactionRead | None:
    """The order's ``transaction`` for its REST reads; null until something is recorded."""
    if order.deposit_amount is None and order.payout_amount is None:
        return None
    deposit = None
    if order.deposit_amount is not None and order.deposit_seen_at:  # its hash is null once erased
        deposit = DepositRead(
            tx_hash=order.deposit_tx_hash, amount=order.deposit_amount, seen_at=order.deposit_seen_at
        )
    payout = None
    if order.payout_amount is not None:
        payout = PayoutRead(
            tx_hash=order.payout_tx_hash, amount=order.payout_amount, network_fee=order.payout_network_fee
        )
    return TransactionRead(
        deposit=deposit,
        payout=payout,
        payment=order.payment_outcome,  # type: ignore[arg-type]
        difference=None
        if order.deposit_amount is None
        else strip_trailing_zeros(order.deposit_amount - order.amount),
    )
