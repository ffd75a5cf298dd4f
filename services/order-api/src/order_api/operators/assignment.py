"""Auto-assignment (``ORDER_API_AUTO_ASSIGN``): a takeable order goes to an operator instead of waiting for
one to take it, and comes back to the pool when they leave it untouched.

Who gets it (``pick_assignee``): among the active operators (role operator) marked available, under their
cap, who never had this order (no step of its history is theirs, and it was never auto-assigned to them),
the one holding the fewest orders; ties go to the one idle longest. An operator is idle since the latest of:
becoming available (their last presence change, or their account's creation), their last step on any order
(a take, a status change, a release, an escalation or comment, an accept) and their last auto-assignment.
Nobody fits: the order stays takeable, announced as before.

Race safety. The assignment worker (``order_api.workers.sweeper``) runs in every replica, one order per
transaction, each under one advisory lock (``auto-assign``), so replicas assign one order at a time and see
each other's assignments. The chosen operator is then locked as a take locks them (operator before order:
the cap is counted by one transaction at a time), and the order is handed over with the same one conditional
``UPDATE`` as a take (``lifecycle.assign_order``): a concurrent take wins or loses cleanly, never both.

Untouched. The assignment lapses ``ORDER_API_AUTO_ASSIGN_TIMEOUT_SECONDS`` after it was made unless the
order's history gained a step by anyone else since (the operator accepted it, changed its status,
escalated or commented on it, support stepped in). A lapsed order goes back to the pool as a release would
(``order.assignment_lapsed``: the card posted again, the operator told), and, being already theirs once, is
never auto-assigned to the same operator again (no ping-pong): the next candidate gets it, or nobody.
A lapsed assignment is not a take: the operator's statistics count orders they closed, and this one they
did not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import OrderAssigned, OrderAssignmentLapsed
from order_api.operators import repository
from order_api.operators.errors import OrderNotHeldError
from order_api.operators.models import AssignmentOutcome, Operator, OrderAssignment, Presence
from order_api.operators.schemas import OperatorOrderDetail
from order_api.operators.service import OperatorPrincipal
from order_api.operators.workflow import get_order
from order_api.operators.workload import deposit_deadline, room_for_one_more
from order_api.orders import lifecycle
from order_api.orders.models import Order, OrderStatus
from order_api.orders.service import load_order
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import lock_until_commit, utcnow
from servicekit.plurals import english

log = logging.getLogger("order_api.operators.assignment")

ORDER_ASSIGNED = OrderAssigned.event_type
ORDER_ASSIGNMENT_LAPSED = OrderAssignmentLapsed.event_type
ORDER_ASSIGNMENT_ACCEPTED = "order.assignment_accepted"
"""Audited and in the order's history; not announced (nothing changes for anyone else)."""
SYSTEM_AUTO_ASSIGN = lifecycle.Actor(kind="system", id="auto-assign", channel="system")
ASSIGNING_LOCK = "auto-assign"
ASSIGNMENT_TABLE = cast(Table, OrderAssignment.__table__)
BATCH = 50
ATTEMPTS = 3  # candidates whose load changed while this one waited for their lock: choose again


@dataclass(frozen=True, slots=True)
class Candidate:
    """An operator who may be given the order, with what the choice weighs."""

    operator_id: str
    held: int
    cap: int
    idle_since: datetime


def idle_since(*moments: datetime | None) -> datetime:
    """The latest of the moments known (becoming available, last step, last assignment)."""
    return max(moment for moment in moments if moment is not None)


def pick_assignee(candidates: Iterable[Candidate]) -> str | None:
    """The candidate under their cap with the fewest held orders, then idle the longest (then by id, so the
    choice is the same in every replica); ``None`` when nobody is under their cap."""
    room = [c for c in candidates if c.held < c.cap]
    if not room:
        return None
    return min(room, key=lambda c: (c.held, c.idle_since, c.operator_id)).operator_id


async def candidates_for(session: AsyncSession, *, settings: Settings, order_id: str) -> list[Candidate]:
    rows = await repository.assignee_candidates(session, order_id=order_id)
    return [
        Candidate(
            operator_id=row.id,
            held=int(row.held),
            cap=row.max_held_orders or settings.operator_max_held_orders,
            idle_since=idle_since(row.available_since, row.last_step_at, row.last_assigned_at),
        )
        for row in rows
    ]


async def orders_to_assign(session: AsyncSession, *, settings: Settings) -> list[str]:
    """The takeable orders the worker tries next, oldest first."""
    return await repository.orders_to_auto_assign(
        session, limit=BATCH, default_cap=settings.operator_max_held_orders
    )


async def auto_assign(
    session: AsyncSession, *, settings: Settings, protection: DataProtection, order_id: str
) -> bool:
    """Give ``order_id``, if still takeable, to the operator :func:`pick_assignee` chooses, in the caller's
    transaction; ``False`` when nobody fits or the order was taken meanwhile."""
    await lock_until_commit(session, ASSIGNING_LOCK, write_lock_on=ASSIGNMENT_TABLE)
    if not await repository.still_takeable(session, order_id=order_id):  # another replica got there first
        return False
    for _ in range(ATTEMPTS):
        chosen = pick_assignee(await candidates_for(session, settings=settings, order_id=order_id))
        if chosen is None:
            return False
        operator = await repository.operator_locked(session, operator_id=chosen)
        if operator is None or not await _still_fits(session, settings=settings, operator=operator):
            continue
        return await _hand_over(
            session, settings=settings, protection=protection, order_id=order_id, to=operator
        )
    return False


async def _still_fits(session: AsyncSession, *, settings: Settings, operator: Operator) -> bool:
    """Whether ``operator`` (now locked) is still active, available and under their cap."""
    if not operator.active or operator.presence != Presence.AVAILABLE.value:
        return False
    return await room_for_one_more(session, settings=settings, operator=operator)


async def _hand_over(
    session: AsyncSession, *, settings: Settings, protection: DataProtection, order_id: str, to: Operator
) -> bool:
    now = utcnow()
    lapses_at = now + timedelta(seconds=settings.auto_assign_timeout_seconds)
    order = await lifecycle.assign_order(
        session,
        protection=protection,
        order_id=order_id,
        operator_id=to.id,
        actor=SYSTEM_AUTO_ASSIGN,
        event_type=ORDER_ASSIGNED,
        details={"operator_id": to.id, "lapses_at": lapses_at.isoformat()},
        extra={"lapses_at": lapses_at, "operator_telegram_user_id": to.telegram_user_id},
    )
    if order is None:
        return False
    session.add(OrderAssignment(order_id=order_id, operator_id=to.id, assigned_at=now, lapses_at=lapses_at))
    await session.flush()
    log.info("order auto-assigned", extra={"order_id": order_id, "operator_id": to.id})
    return True


def _timeout_text(seconds: int) -> str:
    if seconds % 60 == 0:
        return english(seconds // 60, "minute")
    return english(seconds, "second")


async def lapse_untouched_assignments(
    session: AsyncSession, *, settings: Settings, protection: DataProtection
) -> int:
    """Give back every auto-assigned order left untouched past its ``lapses_at`` (row-locked with ``SKIP
    LOCKED``: replicas take different ones), then settle the other due assignments; returns how many
    lapsed."""
    now = utcnow()
    lapsed = 0
    for assignment, order in await repository.lapsed_assignments(session, now=now, limit=BATCH):
        if await repository.claim_lapse(session, assignment_id=assignment.id, now=now):
            await _give_back_lapsed(session, settings=settings, protection=protection, order=order)
            lapsed += 1
    await session.flush()
    await repository.settle_due_assignments(session, now=now)
    if lapsed:
        log.info("auto-assignments lapsed back to the pool", extra={"count": lapsed})
    return lapsed


async def _give_back_lapsed(
    session: AsyncSession, *, settings: Settings, protection: DataProtection, order: Order
) -> None:
    """``in_progress`` → ``awaiting_deposit`` as a release (``lifecycle.give_back``), announced as
    ``order.assignment_lapsed`` naming the operator, so the notifier can tell them."""
    previous = order.operator_id
    holder = (
        await session.execute(select(Operator.name, Operator.telegram_user_id).where(Operator.id == previous))
    ).first()
    extra: dict[str, Any] = {
        "previous_operator_id": previous,
        "previous_operator_name": holder.name if holder else None,
        "previous_operator_telegram_user_id": holder.telegram_user_id if holder else None,
    }
    await lifecycle.change_status(
        session,
        protection=protection,
        order=order,
        to=OrderStatus.AWAITING_DEPOSIT,
        actor=SYSTEM_AUTO_ASSIGN,
        comment=f"Not accepted within {_timeout_text(settings.auto_assign_timeout_seconds)}.",
        changes={"operator_id": None, "expires_at": deposit_deadline(settings, order)},
        details={"previous_operator_id": previous},
        event_type=ORDER_ASSIGNMENT_LAPSED,
        extra=extra,
    )


async def accept_assignment(
    *, session: AsyncSession, protection: DataProtection, principal: OperatorPrincipal, order_id: str
) -> OperatorOrderDetail:
    """The operator accepts an order auto-assigned to them: it no longer lapses (audited, in the order's
    history). Accepting again, or an order one took oneself, changes nothing; only its holder may."""
    order = await load_order(session, order_id=order_id, for_update=True)
    if principal.operator_id is None or order.operator_id != principal.operator_id:
        raise await _not_holder(session, order=order)
    pending = await repository.pending_assignment(
        session, order_id=order.id, operator_id=principal.operator_id
    )
    if pending is not None:
        now = utcnow()
        pending.outcome, pending.settled_at = AssignmentOutcome.ACCEPTED.value, now
        await session.flush()
        await lifecycle.record_order_action(
            session,
            protection=protection,
            order=order,
            actor=principal.actor,
            event_type=ORDER_ASSIGNMENT_ACCEPTED,
            from_status=order.status,
            details={"assigned_at": pending.assigned_at.isoformat()},
            announce=False,
        )
    return await get_order(session=session, protection=protection, order_id=order.id)


async def _not_holder(session: AsyncSession, *, order: Order) -> OrderNotHeldError:
    name = (
        await repository.operator_name(session, operator_id=order.operator_id) if order.operator_id else None
    )
    held_by = {"operator_id": order.operator_id, "name": name} if order.operator_id else None
    return OrderNotHeldError(
        "Only the operator holding the order may accept it."
        if held_by is None
        else f"{held_by['name']} holds this order.",
        extra={"held_by": held_by},
    )
