"""The order lifecycle: the one place that knows which status may follow which, and the one
function every status change goes through — it checks the transition, bumps ``version``, writes the
``order_event`` row and the ``audit_log`` row and emits the events, all in the caller's transaction.

``take_order`` is the same transition (``awaiting_deposit`` → ``in_progress``) as one conditional ``UPDATE``,
so any number of concurrent takers have exactly one winner. The events are ``desk_contracts.events`` models
(the README's event catalogue is generated from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from desk_contracts.events import (
    ACTION_EVENTS,
    OrderAssignmentTimedOut,
    OrderClosed,
    OrderCreated,
    OrderEscalated,
    OrderEscalationCommented,
    OrderEscalationResolved,
    OrderReassigned,
    OrderReleased,
    OrderStatusChanged,
    OrderTaken,
)
from order_api.audit.service import append_audit
from order_api.customers.models import Customer
from order_api.customers.service import EMAIL_CONTEXT
from order_api.db import outbox
from order_api.operators.models import Operator
from order_api.orders.errors import OrderTransitionError, OrderVersionMismatchError
from order_api.orders.live import signal_order_change
from order_api.orders.models import AllocationState, Order, OrderEvent, OrderStatus
from order_api.protection import DataProtection
from servicekit.db import utcnow
from servicekit.outbox import publish
from servicekit.telemetry import current_trace_id

S = OrderStatus
NEXT: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.AWAITING_ADDRESS: frozenset({S.AWAITING_DEPOSIT, S.QUEUED, S.CANCELLED, S.EXPIRED}),
    S.QUEUED: frozenset({S.AWAITING_DEPOSIT, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_DEPOSIT: frozenset({S.IN_PROGRESS, S.CANCELLED, S.EXPIRED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.CANCELLED, S.AWAITING_DEPOSIT}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in NEXT.items() if not nxt)
OPEN = frozenset(OrderStatus) - TERMINAL

# Events to the notifier about an order (README, "Events"). Each transition emits exactly one of the first
# four; the audit row of an action on an order is named by the same type.
ORDER_CREATED = OrderCreated.event_type
ORDER_STATUS_CHANGED = OrderStatusChanged.event_type
ORDER_TAKEN = OrderTaken.event_type
ORDER_RELEASED = OrderReleased.event_type
ORDER_ASSIGNMENT_TIMED_OUT = OrderAssignmentTimedOut.event_type
ORDER_REASSIGNED = OrderReassigned.event_type
ORDER_ESCALATED = OrderEscalated.event_type
ORDER_ESCALATION_COMMENTED = OrderEscalationCommented.event_type
ORDER_ESCALATION_RESOLVED = OrderEscalationResolved.event_type


def check_transition(current: str, target: OrderStatus) -> None:
    if target not in NEXT[OrderStatus(current)]:
        raise OrderTransitionError(
            f"An order that is {current} cannot become {target}.",
            extra={"order_status": current, "requested_status": target.value},
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes an order, and through which channel."""

    kind: str  # customer | operator | api-key | system | cli
    id: str
    channel: str = "rest"  # rest | telegram | system | cli
    role: str | None = None  # operator | support | admin, for staff
    name: str | None = None
    audited: bool = True

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def actor_role(self) -> str:
        """The role the audit trail records: the staff role, else the kind (customer, system)."""
        return self.role or self.kind


SYSTEM_EXPIRY = Actor(kind="system", id="expiry", channel="system")
# Address bookkeeping (wallet-pool assigned an address) is in the order's history and in wallet-pool's own
# allocation table, but not in the hash-chained audit log: that log is appended under one lock, and intake
# must not queue behind it (see README, "Audit trail").
SYSTEM_WALLET_POOL = Actor(kind="system", id="wallet-pool", channel="system", audited=False)
SYSTEM_ASSIGNMENT_TIMEOUT = Actor(kind="system", id="assignment-timeout", channel="system")


def exchange_fields(order: Order) -> dict[str, Any]:
    """What the order exchanges: the pair of currencies and networks, and the amount."""
    return {
        "from_currency": order.from_currency,
        "from_network": order.from_network,
        "to_currency": order.to_currency,
        "to_network": order.to_network,
        "amount": order.amount,
    }


def order_fields(order: Order) -> dict[str, Any]:
    """The fields every order event starts with (``desk_contracts.events.OrderFields``), from ``order``."""
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "status": order.status,
        **exchange_fields(order),
        "priority": order.priority,
        "deposit_address": order.deposit_address,
        "queue_position": order.queue_position,
        "expires_at": order.expires_at,
        "operator_id": order.operator_id,
        "locale": order.locale,
        "version": order.version,
    }


async def customer_email_fields(
    session: AsyncSession, *, protection: DataProtection, order: Order, event_type: str
) -> dict[str, Any]:
    """``customer_email`` for an event to the notifier, sealed with the event keys (never in clear in the
    outbox or its WAL) and masked once delivered: one ``SELECT`` of the sealed email, opened with
    ``protection``. Every function that may build such an event takes ``protection`` as a required argument,
    so an event cannot silently go without the address the customer is written to."""
    sealed = await session.scalar(select(Customer.email_sealed).where(Customer.id == order.customer_id))
    if not sealed:  # no such customer, or erased: nobody to write to
        return {}
    email = protection.open(sealed, context=EMAIL_CONTEXT)
    return protection.sealed_event_fields(
        {"customer_email": email}, event_type=event_type, aggregate_id=order.id
    )


async def record_event(
    session: AsyncSession,
    *,
    order: Order,
    from_status: str | None,
    actor: Actor,
    comment: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        insert(OrderEvent).values(
            order_id=order.id,
            from_status=from_status,
            to_status=order.status,
            actor=actor.label,
            channel=actor.channel,
            correlation_id=current_trace_id(),
            comment=comment,
            details=details or {},
            created_at=utcnow(),
        )
    )


async def record_order_action(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    actor: Actor,
    event_type: str,
    from_status: str | None,
    comment: str | None = None,
    details: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    announce: bool = True,
) -> None:
    """The record of one action on ``order`` (already applied): its ``order_event`` row, the signal to the
    order's live streams (``orders.live``), its audit row and, when ``announce``, the ``event_type`` event to
    the notifier: the order's fields plus who acted."""
    await record_event(
        session, order=order, from_status=from_status, actor=actor, comment=comment, details=details
    )
    await signal_order_change(session, order=order, from_status=from_status)
    if actor.audited:
        await append_audit(
            session,
            actor=actor,
            action=event_type,
            target_type="order",
            target_id=order.id,
            parameters={
                "from_status": from_status,
                "to_status": order.status,
                "version": order.version,
                "comment": comment,
                **(details or {}),
            },
        )
    if not announce:
        return
    operator_name = actor.name if actor.kind == "operator" and actor.id == order.operator_id else None
    if order.operator_id is not None and operator_name is None:
        operator_name = await session.scalar(select(Operator.name).where(Operator.id == order.operator_id))
    event = ACTION_EVENTS[event_type](
        **order_fields(order),
        from_status=from_status,
        operator_name=operator_name,
        actor=actor.label,
        actor_role=actor.actor_role,
        channel=actor.channel,
        comment=comment,
        **(extra or {}),
        **(
            await customer_email_fields(session, protection=protection, order=order, event_type=event_type)
            if event_type == ORDER_STATUS_CHANGED
            else {}
        ),
    )
    await publish(session, outbox, destination="notifier", event=event, aggregate_id=order.id)


async def _after_transition(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    from_status: str,
    actor: Actor,
    event_type: str,
    comment: str | None,
    details: dict[str, Any] | None,
    extra: dict[str, Any] | None,
    announce: bool,
) -> None:
    await record_order_action(
        session,
        protection=protection,
        order=order,
        actor=actor,
        event_type=event_type,
        from_status=from_status,
        comment=comment,
        details=details,
        extra=extra,
        announce=announce,
    )
    if order.status == OrderStatus.COMPLETED:
        # Completed orders earn the customer queue priority (settings.priority).
        await session.execute(
            update(Customer)
            .where(Customer.id == order.customer_id)
            .values(completed_orders=Customer.completed_orders + 1)
        )
    if order.status in TERMINAL and order.allocation_state != AllocationState.RELEASED:
        await request_release(session, order=order)


def check_version(order: Order, expected_version: int | None) -> None:
    """``412`` when the caller named (``If-Match``) another version than the order's."""
    if expected_version is not None and expected_version != order.version:
        raise OrderVersionMismatchError(
            f"The order is at version {order.version}, not {expected_version}.",
            extra={"version": order.version},
        )


async def _versioned_update(
    session: AsyncSession, *, order: Order, values: dict[str, Any], expected_version: int | None
) -> None:
    """Write ``values`` to ``order`` and bump its version, if nobody changed it since it was read: ``412``
    when the caller named another version (or lost the race having named one), ``409`` otherwise."""
    check_version(order, expected_version)
    values = {**values, "version": order.version + 1, "updated_at": utcnow()}
    result = await session.execute(
        update(Order).where(Order.id == order.id, Order.version == order.version).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if expected_version is not None:
            raise OrderVersionMismatchError("The order changed since you read it.")
        raise OrderTransitionError("The order changed while this request was handled; read it again.")
    for name, value in values.items():
        set_committed_value(order, name, value)  # already written above: keep the ORM from writing it again


async def record_changes(session: AsyncSession, *, order: Order, values: dict[str, Any]) -> None:
    """Write ``values`` to ``order`` without a change of status (a hold recording the deposit seen): a new
    version, so a client holding the old one re-reads before it changes the order."""
    await _versioned_update(session, order=order, values=values, expected_version=None)


async def change_status(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    to: OrderStatus,
    actor: Actor,
    comment: str | None = None,
    expected_version: int | None = None,
    changes: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    announce: bool = True,
    event_type: str = ORDER_STATUS_CHANGED,
    extra: dict[str, Any] | None = None,
) -> Order:
    """Move ``order`` to ``to``: checked, versioned, recorded, audited and announced in the caller's
    transaction (``extra`` adds fields to the event's payload).

    The ``UPDATE`` is conditional on the version read, so a concurrent change makes this one fail with
    ``412`` (when the caller named a version) or ``409`` rather than silently overwrite it. Entering a
    terminal status asks wallet-pool, through the outbox, to release the deposit address (a wallet-pool outage
    delays the release, never the status change) and clears the order's queue fields.
    """
    check_transition(order.status, to)
    now = utcnow()
    values: dict[str, Any] = {"status": to.value, **(changes or {})}
    if to in TERMINAL:  # a closed order has no place in any queue
        values.update(closed_at=now, queue_position=None, estimated_wait_seconds=None)
    from_status = order.status  # read first: the ORM UPDATE below also updates ``order`` in the session
    await _versioned_update(session, order=order, values=values, expected_version=expected_version)
    await _after_transition(
        session,
        protection=protection,
        order=order,
        from_status=from_status,
        actor=actor,
        event_type=event_type,
        comment=comment,
        details=details,
        extra=extra,
        announce=announce,
    )
    return order


async def _hand_over_takeable(session: AsyncSession, *, order_id: str, operator_id: str) -> Order | None:
    """``awaiting_deposit`` → ``in_progress`` held by ``operator_id``, in ONE conditional ``UPDATE`` on an order
    nobody holds: of any number of concurrent callers exactly one matches the row."""
    check_transition(OrderStatus.AWAITING_DEPOSIT, OrderStatus.IN_PROGRESS)
    order: Order | None = (
        await session.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.status == OrderStatus.AWAITING_DEPOSIT.value,
                Order.operator_id.is_(None),
            )
            .values(
                status=OrderStatus.IN_PROGRESS.value,
                operator_id=operator_id,
                version=Order.version + 1,
                updated_at=utcnow(),
            )
            .returning(Order)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    return order


async def take_order(
    session: AsyncSession, *, protection: DataProtection, order_id: str, actor: Actor
) -> Order | None:
    """Give an ``awaiting_deposit`` order nobody holds to the operator ``actor``, in ONE conditional
    ``UPDATE``: of any number of concurrent takers exactly one matches the row. ``None`` when this one did
    not (taken by someone else, not takeable, or no such order: the caller reads the order to tell which)."""
    return await assign_order(
        session,
        protection=protection,
        order_id=order_id,
        operator_id=actor.id,
        actor=actor,
        event_type=ORDER_TAKEN,
    )


async def give_back(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    actor: Actor,
    expires_at: datetime,
    event_type: str = ORDER_RELEASED,
    comment: str | None = None,
    expected_version: int | None = None,
) -> Order:
    """``in_progress`` → ``awaiting_deposit``: nobody holds the order any more and operators may take it
    again (an operator gave it back, or the assignment timed out); the customer gets until ``expires_at``."""
    previous = order.operator_id
    if order.status != OrderStatus.IN_PROGRESS:
        raise OrderTransitionError(
            f"Only an order in progress can be given back; this one is {order.status}.",
            extra={"order_status": order.status},
        )
    return await change_status(
        session,
        protection=protection,
        order=order,
        to=OrderStatus.AWAITING_DEPOSIT,
        actor=actor,
        comment=comment,
        expected_version=expected_version,
        changes={"operator_id": None, "expires_at": expires_at},
        details={"previous_operator_id": previous},
        event_type=event_type,
        extra={"previous_operator_id": previous},
    )


async def reassign(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    operator: Operator,
    actor: Actor,
    comment: str | None = None,
    expected_version: int | None = None,
) -> Order:
    """Hand an order in progress to ``operator`` (its status does not change): versioned, recorded, audited
    and announced (``order.reassigned``, naming the previous holder) in the caller's transaction."""
    if order.status != OrderStatus.IN_PROGRESS:
        raise OrderTransitionError(
            f"Only an order in progress can be reassigned; this one is {order.status}.",
            extra={"order_status": order.status},
        )
    previous = order.operator_id
    holder = (
        await session.execute(select(Operator.name, Operator.telegram_user_id).where(Operator.id == previous))
    ).first()
    await _versioned_update(
        session, order=order, values={"operator_id": operator.id}, expected_version=expected_version
    )
    await record_order_action(
        session,
        protection=protection,
        order=order,
        actor=actor,
        event_type=ORDER_REASSIGNED,
        from_status=order.status,
        comment=comment,
        details={"previous_operator_id": previous, "operator_id": operator.id},
        extra={
            "previous_operator_id": previous,
            "previous_operator_name": holder.name if holder else None,
            "operator_telegram_user_id": operator.telegram_user_id,
            "previous_operator_telegram_user_id": holder.telegram_user_id if holder else None,
        },
    )
    return order


async def request_release(session: AsyncSession, *, order: Order) -> None:
    """Ask wallet-pool (through the outbox) to free the order's address or drop it from the queue."""
    closed = OrderClosed(
        order_id=order.id, status=order.status, currency=order.from_currency, network=order.from_network
    )
    await publish(session, outbox, destination="wallet-pool", event=closed, aggregate_id=order.id)
    await session.execute(
        update(Order).where(Order.id == order.id).values(allocation_state=AllocationState.RELEASED.value)
    )
    set_committed_value(order, "allocation_state", AllocationState.RELEASED.value)


async def assign_order(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order_id: str,
    operator_id: str,
    actor: Actor,
    event_type: str,
    details: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Order | None:
    """Hand an ``awaiting_deposit`` order nobody holds to ``operator_id`` on behalf of ``actor`` (the operator
    taking it, or the auto-assigner), recorded as ``event_type``: the one conditional ``UPDATE`` a take is, so
    an assignment races takes safely; ``None`` when the order was taken meanwhile or is not takeable."""
    order = await _hand_over_takeable(session, order_id=order_id, operator_id=operator_id)
    if order is not None:
        await _after_transition(
            session,
            protection=protection,
            order=order,
            from_status=OrderStatus.AWAITING_DEPOSIT.value,
            actor=actor,
            event_type=event_type,
            comment=None,
            details=details,
            extra=extra,
            announce=True,
        )
    return order
