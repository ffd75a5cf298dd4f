"""The order lifecycle (DESIGN §3): the one place that knows which status may follow which, and the one
function every status change goes through — it checks the transition, bumps ``version``, writes the
``order_event`` row and emits the events, all in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from order_api.db import outbox
from order_api.orders.errors import OrderTransitionError, OrderVersionMismatchError
from order_api.orders.models import AllocationState, Order, OrderEvent, OrderStatus
from servicekit.db import utcnow
from servicekit.outbox import add_event
from servicekit.telemetry import current_trace_id

S = OrderStatus
NEXT: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.QUEUED: frozenset({S.AWAITING_DEPOSIT, S.CANCELLED, S.EXPIRED}),
    S.AWAITING_DEPOSIT: frozenset({S.IN_PROGRESS, S.CANCELLED, S.EXPIRED}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.CANCELLED, S.AWAITING_DEPOSIT}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
TERMINAL = frozenset(s for s, nxt in NEXT.items() if not nxt)
OPEN = frozenset(OrderStatus) - TERMINAL


def check_transition(current: str, target: OrderStatus) -> None:
    if target not in NEXT[OrderStatus(current)]:
        raise OrderTransitionError(
            f"An order that is {current} cannot become {target}.",
            extra={"order_status": current, "requested_status": target.value},
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """Who changes an order, and through which channel."""

    kind: str  # customer | operator | system
    id: str
    channel: str = "rest"  # rest | telegram | system

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.id}"


SYSTEM_EXPIRY = Actor(kind="system", id="expiry", channel="system")
SYSTEM_WALLET_POOL = Actor(kind="system", id="wallet-pool", channel="system")


def order_payload(order: Order) -> dict[str, Any]:
    """The stable event payload describing an order (documented in the README's event catalogue)."""
    return {
        "order_id": order.id,
        "customer_id": order.customer_id,
        "status": order.status,
        "from_currency": order.from_currency,
        "from_network": order.from_network,
        "to_currency": order.to_currency,
        "to_network": order.to_network,
        "amount": str(order.amount),
        "priority": order.priority,
        "deposit_address": order.deposit_address,
        "queue_position": order.queue_position,
        "expires_at": order.expires_at.isoformat() if order.expires_at else None,
        "operator_id": order.operator_id,
        "locale": order.locale,
        "version": order.version,
    }


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


async def change_status(
    session: AsyncSession,
    *,
    order: Order,
    to: OrderStatus,
    actor: Actor,
    comment: str | None = None,
    expected_version: int | None = None,
    changes: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    announce: bool = True,
) -> Order:
    """Move ``order`` to ``to``: checked, versioned, recorded and announced in the caller's transaction.

    The ``UPDATE`` is conditional on the version read, so a concurrent change makes this one fail with
    ``412`` (when the caller named a version) or ``409`` rather than silently overwrite it. Entering a
    terminal status asks wallet-pool, through the outbox, to release the deposit address: a wallet-pool outage
    delays the release, never the status change.
    """
    check_transition(order.status, to)
    if expected_version is not None and expected_version != order.version:
        raise OrderVersionMismatchError(
            f"The order is at version {order.version}, not {expected_version}.",
            extra={"version": order.version},
        )
    now = utcnow()
    values: dict[str, Any] = {
        "status": to.value,
        "version": order.version + 1,
        "updated_at": now,
        **(changes or {}),
    }
    if to in TERMINAL:
        values["closed_at"] = now
    result = await session.execute(
        update(Order).where(Order.id == order.id, Order.version == order.version).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if expected_version is not None:
            raise OrderVersionMismatchError("The order changed since you read it.")
        raise OrderTransitionError("The order changed while this request was handled; read it again.")
    from_status = order.status
    for name, value in values.items():
        set_committed_value(order, name, value)  # already written above: keep the ORM from writing it again
    await record_event(
        session, order=order, from_status=from_status, actor=actor, comment=comment, details=details
    )
    if announce:
        payload = {
            **order_payload(order),
            "from_status": from_status,
            "actor": actor.label,
            "channel": actor.channel,
        }
        await add_event(
            session,
            outbox,
            destination="notifier",
            event_type="order.status_changed",
            payload=payload,
            aggregate_id=order.id,
        )
    if to in TERMINAL and order.allocation_state != AllocationState.RELEASED:
        await request_release(session, order=order)
    return order


async def request_release(session: AsyncSession, *, order: Order) -> None:
    """Ask wallet-pool (through the outbox) to free the order's address or drop it from the queue."""
    await add_event(
        session,
        outbox,
        destination="wallet-pool",
        event_type="order.closed",
        aggregate_id=order.id,
        payload={
            "order_id": order.id,
            "status": order.status,
            "currency": order.from_currency,
            "network": order.from_network,
        },
    )
    await session.execute(
        update(Order).where(Order.id == order.id).values(allocation_state=AllocationState.RELEASED.value)
    )
    set_committed_value(order, "allocation_state", AllocationState.RELEASED.value)
