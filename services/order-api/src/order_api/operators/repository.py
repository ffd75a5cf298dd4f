"""The operators' queries: operator accounts, their view of orders (keyset pages, joins), escalations, Telegram
link codes, workload figures and the idle assignments the timeout worker claims. Repositories only execute;
the caller commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from order_api.operators.models import (
    AssignmentOutcome,
    Escalation,
    EscalationStatus,
    Operator,
    OrderAssignment,
    TelegramLinkCode,
)
from order_api.operators.schemas import OperatorOrderFilter
from order_api.orders.models import Order, OrderEvent, OrderStatus
from servicekit.db import lock_until_commit
from servicekit.pagination import Keyset

OPERATOR_TABLE = cast(Table, Operator.__table__)
CLOSED_BY_OPERATORS = (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)
OPERATORS = Keyset("operators", Operator.created_at, Operator.id, newest_first=False)
TAKEABLE_ORDERS = Keyset("operator-orders", Order.created_at, Order.id, newest_first=False)
"""The takeable list: oldest first, so the longest-waiting order comes first."""
HELD_ORDERS = Keyset("operator-orders-mine", Order.created_at, Order.id, newest_first=False)
"""An operator's own orders, in the same order."""
AUTO_ASSIGN_ACTOR = "system:auto-assign"
"""The auto-assigner's actor label in an order's history (``operators.assignment.SYSTEM_AUTO_ASSIGN``)."""
ESCALATIONS = Keyset("escalations", Escalation.raised_at, Escalation.id, newest_first=False)


# -- operator accounts -------------------------------------------------------------------------------------


async def operator_by_token(session: AsyncSession, *, token_hash: str) -> Operator | None:
    """The active operator holding this token, unless it was revoked (expiry is the caller's rule)."""
    operator: Operator | None = await session.scalar(
        select(Operator).where(
            Operator.token_hash == token_hash,
            Operator.active.is_(True),
            Operator.token_revoked_at.is_(None),
        )
    )
    return operator


async def active_operator_of_telegram_user(
    session: AsyncSession, *, telegram_user_id: int
) -> Operator | None:
    operator: Operator | None = await session.scalar(
        select(Operator).where(Operator.telegram_user_id == telegram_user_id, Operator.active.is_(True))
    )
    return operator


async def operator_id_of_telegram_user(session: AsyncSession, *, telegram_user_id: int) -> str | None:
    """Whichever operator (active or not) holds this Telegram user."""
    holder: str | None = await session.scalar(
        select(Operator.id).where(Operator.telegram_user_id == telegram_user_id)
    )
    return holder


async def all_operators(session: AsyncSession) -> list[Operator]:
    """Every operator, oldest account first."""
    return list(
        (await session.execute(select(Operator).order_by(Operator.created_at, Operator.id))).scalars()
    )


async def operator_page(session: AsyncSession, *, cursor: str | None, limit: int) -> Sequence[Operator]:
    """The page of operators after ``cursor`` (and the first of the next, for :meth:`Keyset.cut`)."""
    return (await session.scalars(OPERATORS.select(select(Operator), cursor=cursor, limit=limit))).all()


async def active_operator_ids_named(session: AsyncSession, *, name: str) -> list[str]:
    """The active operators called ``name``, whatever its case (names are not unique)."""
    return list(
        (
            await session.scalars(
                select(Operator.id)
                .where(func.lower(Operator.name) == name.lower(), Operator.active.is_(True))
                .limit(2)
            )
        ).all()
    )


async def operator_name(session: AsyncSession, *, operator_id: str) -> str | None:
    name: str | None = await session.scalar(select(Operator.name).where(Operator.id == operator_id))
    return name


# -- orders as operators see them ----------------------------------------------------------------------------


def has_open_escalation(order_id: Any) -> Any:
    """SQL: the order (an id or the ``order.id`` column) has an open escalation."""
    return (
        select(Escalation.id)
        .where(Escalation.order_id == order_id, Escalation.status == EscalationStatus.OPEN.value)
        .exists()
    )


async def order_page(
    session: AsyncSession,
    *,
    query: OperatorOrderFilter,
    keyset: Keyset,
    status: OrderStatus,
    held_by: str | None,
) -> Sequence[Row[Any]]:
    """Rows ``(order, holder's name, escalated)`` in ``status`` matching ``query``: the page after its cursor
    in ``keyset``'s order (and the first row of the next, for :meth:`Keyset.cut`)."""
    statement = (
        select(Order, Operator.name, has_open_escalation(Order.id).label("escalated"))
        .outerjoin(Operator, Operator.id == Order.operator_id)
        .where(Order.status == status.value)
    )
    if held_by is not None:
        statement = statement.where(Order.operator_id == held_by)
    if query.currency is not None:
        statement = statement.where(Order.from_currency == query.currency)
    if query.amount_min is not None:
        statement = statement.where(Order.amount >= query.amount_min)
    if query.amount_max is not None:
        statement = statement.where(Order.amount <= query.amount_max)
    if query.created_from is not None:
        statement = statement.where(Order.created_at >= query.created_from)
    if query.created_to is not None:
        statement = statement.where(Order.created_at < query.created_to)
    statement = keyset.select(statement, cursor=query.cursor, limit=query.limit)
    return (await session.execute(statement)).all()


async def is_escalated(session: AsyncSession, *, order_id: str) -> bool:
    return bool(await session.scalar(select(has_open_escalation(order_id))))


async def address_history(
    session: AsyncSession, *, deposit_address: str, except_order_id: str, limit: int
) -> list[dict[str, Any]]:
    """The newest ``limit`` other orders that were given ``deposit_address``."""
    earlier = await session.execute(
        select(
            Order.id.label("order_id"),
            Order.status,
            Order.amount,
            Order.from_currency,
            Order.created_at,
            Order.address_assigned_at,
            Order.closed_at,
        )
        .where(Order.deposit_address == deposit_address, Order.id != except_order_id)
        .order_by(Order.created_at.desc(), Order.id.desc())
        .limit(limit)
    )
    return [row._asdict() for row in earlier]


def _untouched_since(cutoff: datetime) -> Any:
    return (
        ~select(OrderEvent.id).where(OrderEvent.order_id == Order.id, OrderEvent.created_at > cutoff).exists()
    )


async def claim_idle_assignments(
    session: AsyncSession,
    *,
    now: datetime,
    timeout_minutes: int,
    timeout_by_currency: Mapping[str, int],
    limit: int,
) -> Sequence[Order]:
    """Up to ``limit`` orders in progress with no step of their story for their currency's timeout and no
    open escalation, row-locked with ``SKIP LOCKED`` (replicas claim different ones), least recently updated
    first."""
    overrides = timeout_by_currency
    idle = or_(
        *(
            and_(Order.from_currency == currency, _untouched_since(now - timedelta(minutes=minutes)))
            for currency, minutes in overrides.items()
        ),
        and_(
            Order.from_currency.not_in(list(overrides)),
            _untouched_since(now - timedelta(minutes=timeout_minutes)),
        ),
    )
    return (
        (
            await session.execute(
                select(Order)
                .where(Order.status == OrderStatus.IN_PROGRESS.value, idle, ~has_open_escalation(Order.id))
                .order_by(Order.updated_at)
                .limit(limit)
                .with_for_update(skip_locked=True, of=Order)
            )
        )
        .scalars()
        .all()
    )


# -- workload -------------------------------------------------------------------------------------------------


async def orders_closed_since(session: AsyncSession, *, since: datetime) -> Sequence[Row[Any]]:
    """Rows ``(operator_id, status, closed_at, taken_at)`` of the orders operators completed or cancelled
    since ``since``; ``taken_at`` is when the order last went in progress."""
    taken_at = (
        select(func.max(OrderEvent.created_at))
        .where(OrderEvent.order_id == Order.id, OrderEvent.to_status == OrderStatus.IN_PROGRESS.value)
        .scalar_subquery()
    )
    return (
        await session.execute(
            select(Order.operator_id, Order.status, Order.closed_at, taken_at.label("taken_at")).where(
                Order.operator_id.is_not(None),
                Order.status.in_(CLOSED_BY_OPERATORS),
                Order.closed_at >= since,
            )
        )
    ).all()


async def orders_held(session: AsyncSession) -> dict[str, int]:
    """How many orders each operator holds in progress now."""
    held = await session.execute(
        select(Order.operator_id, func.count())
        .where(Order.operator_id.is_not(None), Order.status == OrderStatus.IN_PROGRESS.value)
        .group_by(Order.operator_id)
    )
    return {operator_id: int(count) for operator_id, count in held}


async def held_count(session: AsyncSession, *, operator_id: str) -> int:
    """How many orders ``operator_id`` holds in progress now."""
    count = await session.scalar(
        select(func.count())
        .select_from(Order)
        .where(Order.operator_id == operator_id, Order.status == OrderStatus.IN_PROGRESS.value)
    )
    return int(count or 0)


async def operator_locked(session: AsyncSession, *, operator_id: str) -> Operator | None:
    """The operator, locked until the transaction ends: takes, reassignments and deactivation of the same
    operator queue behind each other, so a cap is checked against a count nobody else is changing. On
    PostgreSQL a lock per operator (``lock_until_commit``) and the row itself; on SQLite the database's write
    lock, taken before the count is read."""
    await lock_until_commit(session, f"operator-load:{operator_id}", write_lock_on=OPERATOR_TABLE)
    operator: Operator | None = await session.scalar(
        select(Operator)
        .where(Operator.id == operator_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return operator


async def held_orders_locked(session: AsyncSession, *, operator_id: str) -> Sequence[Order]:
    """The orders ``operator_id`` holds in progress, row-locked, oldest first."""
    return (
        await session.scalars(
            select(Order)
            .where(Order.operator_id == operator_id, Order.status == OrderStatus.IN_PROGRESS.value)
            .order_by(Order.created_at, Order.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()


# -- escalations ----------------------------------------------------------------------------------------------


async def open_escalation(session: AsyncSession, *, order_id: str) -> Escalation | None:
    escalation: Escalation | None = await session.scalar(
        select(Escalation)
        .where(Escalation.order_id == order_id, Escalation.status == EscalationStatus.OPEN.value)
        .options(selectinload(Escalation.comments))
        .execution_options(populate_existing=True)
    )
    return escalation


async def escalation_for_update(session: AsyncSession, *, escalation_id: str) -> Escalation | None:
    """The escalation with its comments, row-locked until the transaction ends."""
    escalation: Escalation | None = await session.scalar(
        select(Escalation)
        .where(Escalation.id == escalation_id)
        .options(selectinload(Escalation.comments))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return escalation


async def escalation_page(
    session: AsyncSession, *, status: EscalationStatus | None, cursor: str | None, limit: int
) -> Sequence[Escalation]:
    """The page of escalations (in ``status``, if given) with their comments after ``cursor`` (and the first
    of the next, for :meth:`Keyset.cut`), oldest first."""
    statement = select(Escalation).options(selectinload(Escalation.comments))
    if status is not None:
        statement = statement.where(Escalation.status == status.value)
    statement = ESCALATIONS.select(statement, cursor=cursor, limit=limit)
    return (await session.scalars(statement.execution_options(populate_existing=True))).all()


# -- Telegram link codes ------------------------------------------------------------------------------------


async def supersede_link_codes(session: AsyncSession, *, operator_id: str, now: datetime) -> None:
    """Spend every unused code of the operator (a new one replaces them)."""
    await session.execute(
        update(TelegramLinkCode)
        .where(TelegramLinkCode.operator_id == operator_id, TelegramLinkCode.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )


async def usable_link_code(session: AsyncSession, *, code_hash: str, now: datetime) -> Row[Any] | None:
    """``(id, operator_id)`` of the unused, unexpired code with this hash."""
    return (
        await session.execute(
            select(TelegramLinkCode.id, TelegramLinkCode.operator_id).where(
                TelegramLinkCode.code_hash == code_hash,
                TelegramLinkCode.consumed_at.is_(None),
                TelegramLinkCode.expires_at > now,
            )
        )
    ).first()


async def consume_link_code(
    session: AsyncSession, *, code_id: str, telegram_user_id: int, now: datetime
) -> bool:
    """Spend the code for ``telegram_user_id`` if it is still usable, in one conditional ``UPDATE``; ``False``
    when a concurrent redemption (or a newer code) got there first."""
    consumed = await session.execute(
        update(TelegramLinkCode)
        .where(
            TelegramLinkCode.id == code_id,
            TelegramLinkCode.consumed_at.is_(None),
            TelegramLinkCode.expires_at > now,
        )
        .values(consumed_at=now, telegram_user_id=telegram_user_id)
        .execution_options(synchronize_session=False)
    )
    return bool(consumed.rowcount == 1)  # type: ignore[attr-defined]


# -- auto-assignment ------------------------------------------------------------------------------------------


def _operator_actor() -> Any:
    """SQL: the ``order_event.actor`` label of the operator row in the query (``operator:<id>``)."""
    return literal("operator:") + Operator.id


def _may_be_given(order_id: Any) -> tuple[Any, ...]:
    """SQL: the operator row in the query could be auto-assigned the order (an id, or the ``order.id``
    column): active, role operator, available, and never had it (no step of its history is theirs, and it
    was never auto-assigned to them)."""
    actor = _operator_actor()
    # correlated explicitly: nested in orders_to_auto_assign, ``order`` is two levels up
    had_it = or_(
        select(OrderEvent.id)
        .where(
            OrderEvent.order_id == order_id, OrderEvent.actor.like("operator:%"), OrderEvent.actor == actor
        )
        .correlate_except(OrderEvent)
        .exists(),
        select(OrderAssignment.id)
        .where(OrderAssignment.order_id == order_id, OrderAssignment.operator_id == Operator.id)
        .correlate_except(OrderAssignment)
        .exists(),
    )
    return (
        Operator.active.is_(True),
        Operator.role == "operator",
        Operator.presence == "available",
        ~had_it,
    )


def _held_by_operator() -> Any:
    """SQL: how many orders the operator row in the query holds (``in_progress``)."""
    return (
        select(func.count())
        .select_from(Order)
        .where(Order.operator_id == Operator.id, Order.status == OrderStatus.IN_PROGRESS.value)
        .correlate_except(Order)
        .scalar_subquery()
    )


async def orders_to_auto_assign(session: AsyncSession, *, limit: int, default_cap: int) -> list[str]:
    """Up to ``limit`` takeable orders (``awaiting_deposit``, held by nobody, not escalated) that some
    available operator under their cap (``default_cap`` unless their own) could be given, oldest first: an
    order every one of them had already, or whose only candidates are full, does not hold a place ahead of
    newer ones."""
    under_cap = _held_by_operator() < func.coalesce(Operator.max_held_orders, default_cap)
    return list(
        (
            await session.scalars(
                select(Order.id)
                .where(
                    Order.status == OrderStatus.AWAITING_DEPOSIT.value,
                    Order.operator_id.is_(None),
                    ~has_open_escalation(Order.id),
                    select(Operator.id).where(*_may_be_given(Order.id), under_cap).exists(),
                )
                .order_by(Order.created_at, Order.id)
                .limit(limit)
            )
        ).all()
    )


async def still_takeable(session: AsyncSession, *, order_id: str) -> bool:
    """Whether ``order_id`` is still awaiting its deposit with nobody holding it."""
    status = await session.scalar(
        select(Order.status).where(Order.id == order_id, Order.operator_id.is_(None))
    )
    return status == OrderStatus.AWAITING_DEPOSIT.value


async def assignee_candidates(session: AsyncSession, *, order_id: str) -> Sequence[Row[Any]]:
    """Rows ``(id, max_held_orders, held, available_since, last_step_at, last_assigned_at)`` of the operators
    who could be given ``order_id`` (``_may_be_given``)."""
    held = _held_by_operator()
    last_step = (
        select(func.max(OrderEvent.created_at))
        .where(OrderEvent.actor.like("operator:%"), OrderEvent.actor == _operator_actor())
        .scalar_subquery()
    )
    last_assigned = (
        select(func.max(OrderAssignment.assigned_at))
        .where(OrderAssignment.operator_id == Operator.id)
        .scalar_subquery()
    )
    return (
        await session.execute(
            select(
                Operator.id,
                Operator.max_held_orders,
                held.label("held"),
                func.coalesce(Operator.presence_since, Operator.created_at).label("available_since"),
                last_step.label("last_step_at"),
                last_assigned.label("last_assigned_at"),
            ).where(*_may_be_given(order_id))
        )
    ).all()


def _assignment_touched(*, by_its_operator: bool = False) -> Any:
    """SQL: a step of the assigned order's history since its assignment, by anyone but the auto-assigner
    (the operator accepted, changed, escalated or commented on it, or support stepped in), or, with
    ``by_its_operator``, by the operator it was assigned to."""
    by = (
        OrderEvent.actor == literal("operator:") + OrderAssignment.operator_id
        if by_its_operator
        else OrderEvent.actor != AUTO_ASSIGN_ACTOR
    )
    return (
        select(OrderEvent.id)
        .where(
            OrderEvent.order_id == OrderAssignment.order_id,
            OrderEvent.created_at >= OrderAssignment.assigned_at,
            by,
        )
        .exists()
    )


async def lapsed_assignments(
    session: AsyncSession, *, now: datetime, limit: int
) -> Sequence[Row[tuple[OrderAssignment, Order]]]:
    """Up to ``limit`` pending assignments past ``lapses_at`` whose order their operator still holds with no
    step of its history since (but the assignment's own), order row-locked with ``SKIP LOCKED``."""
    return (
        await session.execute(
            select(OrderAssignment, Order)
            .join(Order, Order.id == OrderAssignment.order_id)
            .where(
                OrderAssignment.outcome.is_(None),
                OrderAssignment.lapses_at <= now,
                Order.status == OrderStatus.IN_PROGRESS.value,
                Order.operator_id == OrderAssignment.operator_id,
                ~_assignment_touched(),
            )
            .order_by(OrderAssignment.lapses_at)
            .limit(limit)
            .with_for_update(skip_locked=True, of=Order)
            .execution_options(populate_existing=True)
        )
    ).all()


async def claim_lapse(session: AsyncSession, *, assignment_id: str, now: datetime) -> bool:
    """Mark the assignment ``lapsed`` if it is still pending and untouched, judged afresh: the caller's
    ``lapsed_assignments`` judged on its own snapshot, and an accept or escalation committed just before its
    lock only locked the order row (PostgreSQL re-checks nothing then). ``False``: leave the order alone."""
    claimed = await session.scalar(
        update(OrderAssignment)
        .where(
            OrderAssignment.id == assignment_id,
            OrderAssignment.outcome.is_(None),
            ~_assignment_touched(),
        )
        .values(outcome=AssignmentOutcome.LAPSED.value, settled_at=now)
        .returning(OrderAssignment.id)
        .execution_options(synchronize_session=False)
    )
    return claimed is not None


async def settle_due_assignments(session: AsyncSession, *, now: datetime) -> None:
    """Close the pending assignments past ``lapses_at`` that did not lapse (the caller gave back the lapsed
    ones first): the operator acted on the order (``accepted``), or it left them otherwise (``ended``:
    reassigned by support, returned by a deactivation), or someone else acted on it while they held it
    (``accepted``). One still held, untouched and locked by a request right now stays pending for the next
    pass."""
    due = (OrderAssignment.outcome.is_(None), OrderAssignment.lapses_at <= now)
    still_held = (
        select(Order.id)
        .where(
            Order.id == OrderAssignment.order_id,
            Order.status == OrderStatus.IN_PROGRESS.value,
            Order.operator_id == OrderAssignment.operator_id,
        )
        .exists()
    )
    for outcome, condition in (
        (AssignmentOutcome.ACCEPTED, _assignment_touched(by_its_operator=True)),
        (AssignmentOutcome.ENDED, ~still_held),
        (AssignmentOutcome.ACCEPTED, _assignment_touched()),
    ):
        await session.execute(
            update(OrderAssignment)
            .where(*due, condition)
            .values(outcome=outcome.value, settled_at=now)
            .execution_options(synchronize_session=False)
        )


async def pending_assignment(
    session: AsyncSession, *, order_id: str, operator_id: str | None = None
) -> OrderAssignment | None:
    """The order's pending auto-assignment (to ``operator_id``, if given)."""
    statement = select(OrderAssignment).where(
        OrderAssignment.order_id == order_id, OrderAssignment.outcome.is_(None)
    )
    if operator_id is not None:
        statement = statement.where(OrderAssignment.operator_id == operator_id)
    assignment: OrderAssignment | None = await session.scalar(
        statement.execution_options(populate_existing=True)
    )
    return assignment


async def latest_assignment(session: AsyncSession, *, order_id: str) -> OrderAssignment | None:
    """The order's most recent auto-assignment, whatever its outcome."""
    assignment: OrderAssignment | None = await session.scalar(
        select(OrderAssignment)
        .where(OrderAssignment.order_id == order_id)
        .order_by(OrderAssignment.assigned_at.desc(), OrderAssignment.id.desc())
        .limit(1)
    )
    return assignment
