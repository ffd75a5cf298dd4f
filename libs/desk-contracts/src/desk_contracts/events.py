"""The payload of every event one Exchange Desk service sends another, one model per event type.

An event travels in servicekit's envelope (``id``, ``type``, ``source``, ``occurred_at``, ``aggregate_id``,
``payload``) through the sender's transactional outbox to the receiver's ``POST /v1/events``. The models here
are the ``payload``: the producer builds one and writes :meth:`Event.payload` to its outbox, the consumer
reads the envelope's payload back with the same model (``servicekit.events.read_payload``). The README's
event catalogue is generated from them (``scripts/update_readme_reference.py``).

Wire rules, which the models keep: money and percentages are decimal strings (``"0.015"``), times ISO-8601
with their offset (``2026-11-21T15:30:00+00:00``). Fields are only ever added, never renamed or removed, and a
consumer ignores fields it does not know; a change that cannot follow these rules is a new ``event_version``.
Personal data an event must carry travels sealed (``sealed``, see :class:`SealedPersonalData`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

ORDER_API = "order-api"
WALLET_POOL = "wallet-pool"
NOTIFIER = "notifier"

Timestamp = Annotated[
    datetime, PlainSerializer(lambda value: value.isoformat(), return_type=str, when_used="json")
]
"""A time on the wire as Python's ``isoformat()`` writes it (``+00:00``, not pydantic's ``Z``)."""

PlainDecimal = Annotated[
    Decimal, PlainSerializer(lambda value: format(value, "f"), return_type=str, when_used="json")
]
"""A decimal on the wire as plain digits (``0.0000004``, never ``4E-7``)."""


def _absent(value: object) -> bool:
    return value is None


class Event(BaseModel):
    """Base of every event payload: the event's type name, version, producers and consumers are class
    attributes; the fields are the payload."""

    model_config = ConfigDict(extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True)

    event_type: ClassVar[str]
    event_version: ClassVar[int] = 1
    producers: ClassVar[tuple[str, ...]]
    consumers: ClassVar[tuple[str, ...]]

    def payload(self) -> dict[str, Any]:
        """The payload as it is written to the outbox and travels (JSON types, wire names)."""
        return self.model_dump(mode="json", by_alias=True)


# --- personal data, sealed for the receiver ------------------------------------------------------------------

SEALED = "sealed"
REDACT_AFTER_DELIVERY = "_redact_after_delivery"


class SealedPersonalData(Event):
    """Personal data an event must carry travels in ``sealed``: a JSON object sealed with AES-256-GCM under the
    event key ring order-api (``ORDER_API_EVENT_KEYS``) and the notifier (``NOTIFIER_EVENT_KEYS``) share
    (``servicekit.sealing``), bound to the event's type and aggregate id. The receiver opens it in memory, where its fields (the ``sealed:`` ones below) join the
    payload; no outbox row, WAL page or wire body holds them in clear. ``_redact_after_delivery`` names
    ``sealed``: the sender's outbox masks it once the event is delivered."""

    sealed: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="The personal fields below, sealed with the event keys (absent when there is nobody to "
        "write to).",
    )
    redact_after_delivery: list[str] | None = Field(
        default=None,
        alias=REDACT_AFTER_DELIVERY,
        exclude_if=_absent,
        description="The fields the sender's outbox masks once the event is delivered (`sealed`).",
    )


# --- order-api → notifier: orders ----------------------------------------------------------------------------


class OrderFields(Event):
    """The fields every ``order.*`` event to the notifier starts with: the order as it is after the change."""

    order_id: str = Field(
        min_length=1, max_length=36, description="The order (also the envelope's `aggregate_id`)."
    )
    customer_id: str = Field(min_length=1, max_length=36, description="Whose order it is.")
    status: str = Field(
        description="After the change: awaiting_address, queued, awaiting_deposit, in_progress, completed, "
        "cancelled or expired."
    )
    from_currency: str = Field(description="What the customer sends (BTC, ETH, USDT).")
    from_network: str = Field(description="On which network they send it.")
    to_currency: str = Field(description="What they receive.")
    to_network: str = Field(description="On which network they receive it.")
    amount: Decimal = Field(description="What the customer sends, in `from_currency` (decimal string).")
    priority: str = Field(
        description="normal, priority or vip (the order's place in the queue for an address)."
    )
    deposit_address: str | None = Field(description="Where the customer sends it; null until assigned.")
    queue_position: int | None = Field(description="The order's place in its currency's queue, when queued.")
    expires_at: Timestamp | None = Field(description="When the order expires unless it moves on.")
    operator_id: str | None = Field(description="Who holds the order (or held it when it closed).")
    locale: str = Field(description="The customer's language for emails (en, ru).")
    version: int = Field(description="The order's version after the change (the `If-Match` of the API).")


class ActionFields(OrderFields):
    """The order's fields plus who acted on the order, and how: every event recording an action. Each status
    change emits exactly one of ``order.status_changed``, ``order.taken``, ``order.released``,
    ``order.assignment_timed_out``, ``order.assigned`` and ``order.assignment_lapsed``."""

    from_status: str | None = Field(default=None, description="The status before the action.")
    operator_name: str | None = Field(default=None, description="The name of `operator_id`.")
    actor: str | None = Field(
        default=None,
        description="Who acted: `operator:<id>`, `api-key:<name>`, `customer:<id>` or `system:<worker>`.",
    )
    actor_role: str | None = Field(
        default=None, description="operator, support, admin, customer, api-key or system."
    )
    channel: str | None = Field(default=None, description="rest, telegram, system or cli.")
    comment: str | None = Field(default=None, description="What the actor wrote, if anything.")


class OrderTransaction(BaseModel):
    """What actually moved for an order (``transaction`` of the order's REST reads): the deposit received and
    the payout sent. The hashes are personal data (the payout's shows the payout address on a block
    explorer): only ``order.status_changed`` carries them, listed under ``_redact_after_delivery``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    deposit_tx_hash: str | None = Field(default=None, description="The customer's deposit transaction.")
    deposit_amount: PlainDecimal | None = Field(
        default=None, description="What arrived, in `from_currency` (decimal string)."
    )
    deposit_seen_at: Timestamp | None = Field(default=None, description="When the deposit was seen.")
    payout_tx_hash: str | None = Field(default=None, description="The desk's payout transaction.")
    payout_amount: PlainDecimal | None = Field(default=None, description="What was sent, in `to_currency`.")
    payout_network_fee: PlainDecimal | None = Field(
        default=None, description="The payout's network fee in `to_currency`, if known."
    )
    payment: Literal["exact", "underpaid", "overpaid"] | None = Field(
        default=None, description="The deposit against the ordered amount, once the order is completed."
    )


class CustomerEmail(SealedPersonalData):
    customer_email: str | None = Field(
        default=None,
        exclude_if=_absent,
        description="sealed: the customer's email address, opened by the notifier.",
    )


class OrderCreated(CustomerEmail, OrderFields):
    """A new order's first answer from wallet-pool is known (an address, a queue place), or the intake
    budget ran out (``awaiting_address``). Exactly once per order: an order whose request died before
    announcing it is announced by the sweeper (``announced_at`` still empty after the intake budget + 10 s). The notifier emails the customer and posts the operators'
    card (through telegram-gateway)."""

    event_type = "order.created"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


class OrderStatusChanged(CustomerEmail, ActionFields):
    """Any other transition: the address assigned (from ``awaiting_address`` or ``queued``: the customer's
    "address ready"), a queue place given, completed, cancelled, expired. The notifier emails the customer
    (address ready, closed) and edits the order's cards."""

    event_type = "order.status_changed"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    transaction: OrderTransaction | None = Field(
        default=None,
        exclude_if=_absent,
        description="On completion, what moved (the customer's email shows the amounts and the payout hash); "
        "absent when nothing is recorded, and once an erasure took it from an undelivered event. Listed under "
        "`_redact_after_delivery`: masked in the sender's outbox once delivered.",
    )


class OrderTaken(ActionFields):
    """An operator took the order (``in_progress``). The notifier edits its cards."""

    event_type = "order.taken"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


class GivenBack(ActionFields):
    previous_operator_id: str | None = Field(description="Who held the order until now.")


class OrderReleased(GivenBack):
    """The holder gave the order back (``awaiting_deposit``, takeable again). The notifier posts its card
    again."""

    event_type = "order.released"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


class OrderAssignmentTimedOut(GivenBack):
    """A taken order was untouched too long and is takeable again (``actor`` is
    ``system:assignment-timeout``). The notifier posts its card again."""

    event_type = "order.assignment_timed_out"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


class OrderAssigned(ActionFields):
    """Auto-assignment (``ORDER_API_AUTO_ASSIGN``) handed a takeable order to an available operator
    (``in_progress``, held by ``operator_id``; ``actor`` is ``system:auto-assign``). Unless they accept it or
    act on it by ``lapses_at``, it returns to the pool (``order.assignment_lapsed``). The notifier edits the
    order's cards and tells the operator privately on Telegram."""

    event_type = "order.assigned"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    lapses_at: Timestamp = Field(description="When the assignment lapses unless the operator acts on it.")
    operator_telegram_user_id: int | None = Field(
        default=None, description="The assigned operator's Telegram user, if linked."
    )


class OrderAssignmentLapsed(GivenBack):
    """An auto-assigned order was neither accepted nor acted on in time and is takeable again (``actor`` is
    ``system:auto-assign``); it is not auto-assigned to the same operator again. The notifier posts its card
    again and tells the operator privately."""

    event_type = "order.assignment_lapsed"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    previous_operator_name: str | None = Field(default=None, description="Their name.")
    previous_operator_telegram_user_id: int | None = Field(
        default=None, description="Their Telegram user, if linked."
    )


class OrderReassigned(ActionFields):
    """Support or an admin handed an order in progress to another operator (``operator_id`` now holds it;
    the status does not change). The notifier edits the order's cards and tells both operators privately
    on Telegram (``telegram_user_id`` fields: staff accounts, not customers' data)."""

    event_type = "order.reassigned"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    previous_operator_id: str | None = Field(description="Who held the order until now.")
    previous_operator_name: str | None = Field(default=None, description="Their name.")
    operator_telegram_user_id: int | None = Field(
        default=None, description="The new holder's Telegram user, if linked."
    )
    previous_operator_telegram_user_id: int | None = Field(
        default=None, description="The previous holder's Telegram user, if linked."
    )


class EscalationFields(ActionFields):
    escalation_id: str = Field(min_length=1, max_length=36, description="The escalation's thread.")
    escalation_status: Literal["open", "resolved"] = Field(
        description="The escalation's status after the step."
    )


class OrderEscalated(EscalationFields):
    """The holder pulled support in (``comment`` is the reason); the status does not change. The notifier
    posts the card to the support chat."""

    event_type = "order.escalated"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    reason: Literal["underpaid", "overpaid", "other"] | None = Field(
        default=None,
        description="Why the order is held for support: a deposit short of (`underpaid`) or above "
        "(`overpaid`) the ordered amount that the operator cannot settle, or `other`.",
    )
    transaction: OrderTransaction | None = Field(
        default=None, description="The deposit recorded with the hold, if any (and anything recorded before)."
    )


class OrderEscalationCommented(EscalationFields):
    """A new message in an open escalation's thread (``comment`` is the message). No rule sends anything
    for it today."""

    event_type = "order.escalation_commented"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


class OrderEscalationResolved(EscalationFields):
    """Support resolved the escalation (``comment`` is the resolution). The notifier edits the order's
    cards."""

    event_type = "order.escalation_resolved"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)


# --- order-api → notifier: customers ---------------------------------------------------------------------


class CustomerEmailCodeRequested(SealedPersonalData):
    """A customer asked for a one-time sign-in code. The notifier emails it."""

    event_type = "customer.email_code_requested"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    customer_id: str = Field(min_length=1, max_length=36, description="Who asked.")
    locale: str = Field(description="The language of the email (en, ru).")
    expires_at: Timestamp = Field(description="When the code stops working.")
    email: str | None = Field(default=None, exclude_if=_absent, description="sealed: where to send the code.")
    code: str | None = Field(default=None, exclude_if=_absent, description="sealed: the code itself.")


class CustomerErased(Event):
    """An admin erased the customer (``POST /v1/admin/customers/{id}/erase``). The notifier anonymises
    everything it holds about them."""

    event_type = "customer.erased"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    customer_id: str = Field(min_length=1, max_length=64, description="Whom to forget.")
    erased_at: Timestamp = Field(description="When order-api erased them.")


# --- order-api ↔ wallet-pool --------------------------------------------------------------------------------


class OrderClosed(Event):
    """The order became completed, cancelled or expired: wallet-pool releases its address (or drops it from
    the queue). Retried until wallet-pool takes it; the envelope's ``aggregate_id`` (the order) stands in
    for a payload without ``order_id``."""

    event_type = "order.closed"
    producers = (ORDER_API,)
    consumers = (WALLET_POOL,)

    order_id: str | None = Field(default=None, max_length=64, description="The order whose address to free.")
    status: str | None = Field(default=None, description="completed, cancelled or expired.")
    currency: str | None = Field(default=None, description="The deposit address's currency.")
    network: str | None = Field(default=None, description="The deposit address's network.")


class WalletAssigned(Event):
    """A released address went to a queued order (the head of its pool's queue). order-api moves the order to
    ``awaiting_deposit`` (after checking the address as it checks an allocation answer)."""

    event_type = "wallet.assigned"
    producers = (WALLET_POOL,)
    consumers = (ORDER_API,)

    order_id: str = Field(min_length=1, max_length=36, description="The queued order served.")
    currency: str = Field(min_length=1, max_length=10, description="The address's currency (the order's).")
    network: str = Field(min_length=1, max_length=16, description="The address's network (the order's).")
    address: str = Field(min_length=1, max_length=128, description="The deposit address now the order's.")
    assigned_at: Timestamp | None = Field(default=None, description="When wallet-pool handed it over.")


# --- wallet-pool → notifier: pool levels ------------------------------------------------------------------


class PoolLevel(Event):
    """A pool's figures when its level crossed a threshold (``pool.low``, ``pool.recovered``)."""

    currency: str = Field(min_length=1, max_length=20, description="The pool's currency.")
    network: str = Field(min_length=1, max_length=32, description="The pool's network.")
    free: int = Field(description="Wallets free to hand out.")
    total: int = Field(description="All wallets of the pool.")
    reserved: int = Field(description="Wallets holding an open order's deposit.")
    disabled: int = Field(description="Wallets taken out of use by an admin.")
    queued: int = Field(description="Orders waiting for an address of this pool.")
    free_percent: Decimal = Field(description="Free wallets in percent of the usable (not disabled) ones.")
    threshold_percent: Decimal = Field(description="The pool's low threshold.")
    level: Literal["ok", "low", "empty"] = Field(description="The pool's level now.")
    observed_at: Timestamp = Field(description="When the figures were read.")


class PoolLow(PoolLevel):
    """A pool's free wallets dropped below its threshold (``level`` ``low``), or it ran dry (``empty``); once
    per crossing, never per order. The notifier raises (or escalates) the alert
    ``pool.low:{currency}:{network}``."""

    event_type = "pool.low"
    producers = (WALLET_POOL,)
    consumers = (NOTIFIER,)


class PoolRecovered(PoolLevel):
    """A low pool's free share is back at threshold + margin (``level`` ``ok``). The notifier resolves the
    alert."""

    event_type = "pool.recovered"
    producers = (WALLET_POOL,)
    consumers = (NOTIFIER,)


class QueueLevel(Event):
    """A pool's wait queue when it crossed a threshold (``queue.backlogged``, ``queue.cleared``)."""

    currency: str = Field(min_length=1, max_length=20, description="The pool's currency.")
    network: str = Field(min_length=1, max_length=32, description="The pool's network.")
    queued: int = Field(ge=0, description="Orders waiting for an address of this pool.")
    oldest_wait_seconds: float = Field(ge=0, description="How long the longest-waiting order has waited.")
    length_threshold: int = Field(description="The queue length that raises the alert.")
    wait_threshold_seconds: float = Field(description="The oldest wait that raises the alert.")
    observed_at: Timestamp = Field(description="When the figures were read.")


class QueueBacklogged(QueueLevel):
    """A pool's queue grew to its length threshold, or its oldest order has waited past the wait threshold;
    once per crossing (and once more when the reasons change), never per order. The notifier raises the alert
    ``queue.backlog:{currency}:{network}``."""

    event_type = "queue.backlogged"
    producers = (WALLET_POOL,)
    consumers = (NOTIFIER,)

    reasons: list[Literal["length", "wait"]] = Field(
        min_length=1, max_length=2, description="Which thresholds are crossed."
    )


class QueueCleared(QueueLevel):
    """A backlogged queue is back under both thresholds with a margin. The notifier resolves the alert."""

    event_type = "queue.cleared"
    producers = (WALLET_POOL,)
    consumers = (NOTIFIER,)


# --- order-api → notifier: orders nobody took -----------------------------------------------------------------


class OrdersUntouched(Event):
    """Orders have waited for a deposit, held by no operator, longer than the threshold since they got their
    address (checked every sweep; sent once when there were none before, not per order). The notifier raises
    the alert ``orders.untouched``."""

    event_type = "orders.untouched"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    count: int = Field(ge=1, description="Untouched orders past the threshold.")
    oldest_order_id: str = Field(min_length=1, max_length=36, description="The one waiting longest.")
    oldest_address_assigned_at: Timestamp = Field(description="When the longest-waiting one got its address.")
    threshold_minutes: int = Field(description="The threshold (``ORDER_API_UNTOUCHED_ORDER_ALERT_MINUTES``).")
    observed_at: Timestamp = Field(description="When they were counted.")


class OrdersUntouchedCleared(Event):
    """No order is untouched past the threshold any more (taken, cancelled or expired). The notifier resolves
    the alert."""

    event_type = "orders.untouched_cleared"
    producers = (ORDER_API,)
    consumers = (NOTIFIER,)

    count: Literal[0] = Field(default=0, description="None any more.")
    observed_at: Timestamp = Field(description="When they were counted.")


# --- any service → notifier: its own API health (servicekit.api_health) ------------------------------------


class SlowRoute(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    route: str = Field(min_length=1, max_length=300, description="`METHOD /path/template`.")
    p95_seconds: float = Field(
        description="The route's p95 latency over the window (a histogram bucket's bound)."
    )
    requests: int = Field(ge=0, description="Its requests in the window.")


class ApiHealth(Event):
    """A replica's request figures over the window (``api.degraded``, ``api.recovered``)."""

    service: str = Field(min_length=1, max_length=64, description="The sender.")
    replica: str = Field(min_length=1, max_length=255, description="The sender's process (host name).")
    requests: int = Field(ge=0, description="Requests answered in the window.")
    errors: int = Field(ge=0, description="Of them answered 5xx.")
    error_percent: float = Field(ge=0, description="Their share in percent.")
    window_seconds: float = Field(description="The window.")
    observed_at: Timestamp = Field(description="When the figures were read.")


class ApiDegraded(ApiHealth):
    """The replica's 5xx share reached its threshold, or a route's p95 latency went above its threshold, over
    a full window; once per crossing (again only when a further route or the error rate joins in). The
    notifier raises the alert ``api.health:{service}:{replica}``."""

    event_type = "api.degraded"
    producers = (ORDER_API, WALLET_POOL)
    consumers = (NOTIFIER,)

    error_threshold_percent: float = Field(description="The 5xx share that raises the alert.")
    p95_threshold_seconds: float = Field(description="The p95 latency that raises the alert.")
    errors_alert: bool = Field(description="Whether the 5xx share is (or was) over its threshold.")
    slow_routes: list[SlowRoute] = Field(max_length=100, description="The routes over the latency threshold.")


class ApiRecovered(ApiHealth):
    """The replica's 5xx share is below half its threshold and no route is above half its latency threshold
    any more. The notifier resolves the alert."""

    event_type = "api.recovered"
    producers = (ORDER_API, WALLET_POOL)
    consumers = (NOTIFIER,)


# --- any service's outbox → notifier: dead-lettered events --------------------------------------------------


class DeadEvents(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    destination: str = Field(min_length=1, max_length=64)
    event_type: str = Field(min_length=1, max_length=100)
    dead: int = Field(ge=1)


class OutboxDeadLettered(Event):
    """The number of the sender's dead-lettered outbox events changed (checked every
    ``*_OUTBOX_DEAD_LETTER_CHECK_SECONDS``). The notifier raises the critical alert ``outbox.dead:{service}``."""

    event_type = "outbox.dead_lettered"
    producers = (ORDER_API, WALLET_POOL)
    consumers = (NOTIFIER,)

    service: str = Field(min_length=1, max_length=64, description="The sender, whose outbox it is.")
    dead: int = Field(ge=1, description="Dead-lettered events in all.")
    events: list[DeadEvents] = Field(
        min_length=1, max_length=100, description="How many are dead per destination and event type."
    )
    oldest_dead_at: Timestamp = Field(description="When the oldest of them died.")
    observed_at: Timestamp = Field(description="When they were counted.")


class OutboxDeadCleared(Event):
    """No dead-lettered event is left in the sender's outbox (replayed). The notifier resolves the alert."""

    event_type = "outbox.dead_cleared"
    producers = (ORDER_API, WALLET_POOL)
    consumers = (NOTIFIER,)

    service: str = Field(min_length=1, max_length=64, description="The sender, whose outbox it is.")
    dead: Literal[0] = Field(default=0, description="None any more.")
    observed_at: Timestamp = Field(description="When they were counted.")


EVENTS: dict[str, type[Event]] = {
    model.event_type: model
    for model in (
        OrderCreated,
        OrderStatusChanged,
        OrderTaken,
        OrderReleased,
        OrderAssignmentTimedOut,
        OrderAssigned,
        OrderAssignmentLapsed,
        OrderReassigned,
        OrderEscalated,
        OrderEscalationCommented,
        OrderEscalationResolved,
        CustomerEmailCodeRequested,
        CustomerErased,
        OrderClosed,
        WalletAssigned,
        PoolLow,
        PoolRecovered,
        QueueBacklogged,
        QueueCleared,
        OrdersUntouched,
        OrdersUntouchedCleared,
        ApiDegraded,
        ApiRecovered,
        OutboxDeadLettered,
        OutboxDeadCleared,
    )
}
"""Every event crossing a service boundary, by type name."""

ORDER_EVENTS: dict[str, type[OrderFields]] = {
    name: model for name, model in EVENTS.items() if issubclass(model, OrderFields)
}
"""The ``order.*`` events to the notifier: each starts with the order's fields."""

ACTION_EVENTS: dict[str, type[ActionFields]] = {
    name: model for name, model in EVENTS.items() if issubclass(model, ActionFields)
}
"""The ``order.*`` events recording an action on an order (all but ``order.created``)."""
