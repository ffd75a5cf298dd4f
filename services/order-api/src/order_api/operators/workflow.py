"""The operator's work on orders: find a takeable order, take it, drive it to completed or cancelled,
give it back, escalate it to support, and support's side of an escalation.

Every change goes through ``orders.lifecycle`` (transition table, ``order_event``, audit row, outbox event).
Only the holder of an order (or an admin) drives it; taking is race-free (one conditional ``UPDATE``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators import repository
from order_api.operators.errors import (
    ActedForIdentityForbiddenError,
    EscalationNotFoundError,
    EscalationNotOpenError,
    OperatorForbiddenError,
    OrderAlreadyEscalatedError,
    OrderAlreadyTakenError,
    OrderNotHeldError,
)
from order_api.operators.models import (
    Escalation,
    EscalationComment,
    EscalationStatus,
    OperatorRole,
    new_id,
)
from order_api.operators.schemas import (
    AddressHistoryEntry,
    AssignmentRead,
    EscalationCreate,
    EscalationPage,
    EscalationRead,
    OperatorOrderDetail,
    OperatorOrderFilter,
    OperatorOrderPage,
    OperatorOrderRead,
    OrderReassign,
    OrderStatusUpdate,
)
from order_api.operators.service import OperatorPrincipal
from order_api.operators.workload import (
    active_operator_locked,
    at_capacity,
    deposit_deadline,
    operator_named,
    room_for_one_more,
)
from order_api.orders import lifecycle, transactions
from order_api.orders.errors import OrderTransitionError
from order_api.orders.metrics import OrderMetrics
from order_api.orders.models import Order, OrderStatus
from order_api.orders.repository import take_moments
from order_api.orders.service import load_order, read_order
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import utcnow

ADDRESS_HISTORY_LIMIT = 10


def _operator_order(
    order: Order, *, protection: DataProtection, operator_name: str | None, escalated: bool
) -> OperatorOrderRead:
    return OperatorOrderRead(
        **read_order(order, protection=protection).model_dump(),
        operator_id=order.operator_id,
        operator_name=operator_name,
        escalated=escalated,
    )


async def list_orders(
    *,
    session: AsyncSession,
    protection: DataProtection,
    query: OperatorOrderFilter,
    held_by: str | None = None,
) -> OperatorOrderPage:
    """Orders matching ``query``, oldest first: by default the takeable ones (``awaiting_deposit``), or,
    with ``held_by``, that operator's orders (by default those in progress). Keyset pages on
    ``(created_at, id)``: an order taken meanwhile drops out and a new one joins the end, and nothing is
    skipped or repeated."""
    default = OrderStatus.AWAITING_DEPOSIT if held_by is None else OrderStatus.IN_PROGRESS
    keyset = repository.TAKEABLE_ORDERS if held_by is None else repository.HELD_ORDERS
    rows = await repository.order_page(
        session, query=query, keyset=keyset, status=query.status or default, held_by=held_by
    )
    page, next_cursor = keyset.cut(
        rows, limit=query.limit, position=lambda row: (row[0].created_at, row[0].id)
    )
    return OperatorOrderPage(
        items=[
            _operator_order(order, protection=protection, operator_name=name, escalated=bool(escalated))
            for order, name, escalated in page
        ],
        next_cursor=next_cursor,
    )


async def list_my_orders(
    *,
    session: AsyncSession,
    protection: DataProtection,
    principal: OperatorPrincipal,
    query: OperatorOrderFilter,
) -> OperatorOrderPage:
    """The orders I hold (by default those in progress), oldest first."""
    if principal.operator_id is None:
        raise OperatorForbiddenError("The admin key is no operator account and holds no orders.")
    return await list_orders(
        session=session, protection=protection, query=query, held_by=principal.operator_id
    )


async def _operator_name(session: AsyncSession, operator_id: str | None) -> str | None:
    if operator_id is None:
        return None
    return await repository.operator_name(session, operator_id=operator_id)


async def _held_by(session: AsyncSession, order: Order) -> dict[str, Any] | None:
    if order.operator_id is None:
        return None
    return {"operator_id": order.operator_id, "name": await _operator_name(session, order.operator_id)}


async def _read(session: AsyncSession, *, protection: DataProtection, order: Order) -> OperatorOrderRead:
    escalated = await repository.is_escalated(session, order_id=order.id)
    return _operator_order(
        order,
        protection=protection,
        operator_name=await _operator_name(session, order.operator_id),
        escalated=escalated,
    )


async def get_order(
    *, session: AsyncSession, protection: DataProtection, order_id: str
) -> OperatorOrderDetail:
    """The order with its holder, its open escalation and the earlier orders of its deposit address."""
    order = await load_order(session, order_id=order_id)
    history: list[AddressHistoryEntry] = []
    if order.deposit_address is not None:
        earlier = await repository.address_history(
            session,
            deposit_address=order.deposit_address,
            except_order_id=order.id,
            limit=ADDRESS_HISTORY_LIMIT,
        )
        history = [AddressHistoryEntry.model_validate(row) for row in earlier]
    escalation = await repository.open_escalation(session, order_id=order.id)
    assignment = await repository.latest_assignment(session, order_id=order.id)
    return OperatorOrderDetail(
        **(await _read(session, protection=protection, order=order)).model_dump(),
        address_history=history,
        escalation=read_escalation(escalation) if escalation else None,
        assignment=AssignmentRead.model_validate(assignment) if assignment else None,
    )


async def take_order(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    principal: OperatorPrincipal,
    order_id: str,
    metrics: OrderMetrics | None = None,
) -> OperatorOrderRead:
    """The operator takes an order awaiting its deposit; of concurrent takers exactly one wins, the others
    learn who holds it. Taking an order one already holds changes nothing; one more than the operator's cap
    is ``409 operator_at_capacity`` (``operators.workload``)."""
    if principal.operator_id is None:
        raise OperatorForbiddenError("Only an operator account can hold an order; the admin key cannot.")
    operator = await active_operator_locked(session, operator_id=principal.operator_id)
    order = None
    if await room_for_one_more(session, settings=settings, operator=operator):
        order = await lifecycle.take_order(
            session, protection=protection, order_id=order_id, actor=principal.actor
        )
        if order is not None and metrics is not None:
            takes, _ = await take_moments(session, order_id=order.id)
            metrics.order_taken(address_assigned_at=order.address_assigned_at, first_take=takes == 1)
    if order is None:
        order = await load_order(session, order_id=order_id)
        mine = order.status == OrderStatus.IN_PROGRESS and order.operator_id == principal.operator_id
        if not mine and order.status == OrderStatus.AWAITING_DEPOSIT:
            raise await at_capacity(session, settings=settings, operator=operator)
        if not mine and order.status == OrderStatus.IN_PROGRESS:
            held_by = await _held_by(session, order)
            raise OrderAlreadyTakenError(
                f"{held_by and held_by['name']} has taken this order.", extra={"held_by": held_by}
            )
        if not mine:
            raise OrderTransitionError(
                f"Only an order awaiting its deposit can be taken; this one is {order.status}.",
                extra={"order_status": order.status},
            )
    return await _read(session, protection=protection, order=order)


async def _ensure_may_drive(session: AsyncSession, *, order: Order, principal: OperatorPrincipal) -> None:
    """Only the holder of an order drives it; an admin may drive any, with their own credential (acted for by
    the Telegram gateway, an admin is an operator at work: ``OperatorPrincipal.is_admin``)."""
    if principal.is_admin or (order.operator_id is not None and order.operator_id == principal.operator_id):
        return
    held_by = await _held_by(session, order)
    raise OrderNotHeldError(
        "Take the order first." if held_by is None else f"{held_by['name']} holds this order.",
        extra={"held_by": held_by},
    )


async def _order_to_drive(session: AsyncSession, *, order_id: str, principal: OperatorPrincipal) -> Order:
    """The order, locked for the change, once ``principal`` may drive it."""
    order = await load_order(session, order_id=order_id, for_update=True)
    await _ensure_may_drive(session, order=order, principal=principal)
    return order


async def give_back_order(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    principal: OperatorPrincipal,
    order_id: str,
    comment: str | None,
    expected_version: int | None,
) -> OperatorOrderRead:
    """The holder gives the order back: it is takeable again and operators are told."""
    order = await _order_to_drive(session, order_id=order_id, principal=principal)
    await lifecycle.give_back(
        session,
        protection=protection,
        order=order,
        actor=principal.actor,
        expires_at=deposit_deadline(settings, order),
        comment=comment,
        expected_version=expected_version,
    )
    return await _read(session, protection=protection, order=order)


async def change_order_status(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    principal: OperatorPrincipal,
    order_id: str,
    request: OrderStatusUpdate,
    expected_version: int | None,
    metrics: OrderMetrics | None = None,
) -> OperatorOrderRead:
    """The holder (or an admin) completes or cancels the order, or gives it back (``awaiting_deposit``).
    Closing it releases its deposit address through the outbox."""
    if request.transaction is not None and request.status != OrderStatus.COMPLETED.value:
        raise transactions.invalid("transaction", "only a completion records a transaction")
    if request.status == OrderStatus.AWAITING_DEPOSIT.value:
        return await give_back_order(
            session=session,
            settings=settings,
            protection=protection,
            principal=principal,
            order_id=order_id,
            comment=request.comment,
            expected_version=expected_version,
        )
    order = await _order_to_drive(session, order_id=order_id, principal=principal)
    held = order.operator_id is not None
    record = transactions.Completion(changes={}, details={}, extra={})
    if request.status == OrderStatus.COMPLETED.value:
        # a closed order is a 409 and a stale If-Match a 412, whatever the record says
        lifecycle.check_transition(order.status, OrderStatus.COMPLETED)
        lifecycle.check_version(order, expected_version)
        record = transactions.completion(
            order,
            request.transaction,
            required=settings.completion_transaction_required,
            currencies=settings.currencies,
        )
    await lifecycle.change_status(
        session,
        protection=protection,
        order=order,
        to=OrderStatus(request.status),
        actor=principal.actor,
        comment=request.comment,
        expected_version=expected_version,
        changes=record.changes,
        details=record.details,
        extra=record.extra,
    )
    if metrics is not None:
        closed_by = "completed" if order.status == OrderStatus.COMPLETED else "cancelled_by_operator"
        metrics.order_closed(closed_by)
        if held:
            _, taken_at = await take_moments(session, order_id=order.id)
            metrics.order_handled(taken_at=taken_at)
    return await _read(session, protection=protection, order=order)


async def reassign_order(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    principal: OperatorPrincipal,
    order_id: str,
    request: OrderReassign,
    expected_version: int | None,
) -> OperatorOrderRead:
    """Support or an admin hands an order in progress to another active operator, within that operator's
    cap unless an admin overrides it; both operators are told (``order.reassigned``)."""
    if request.override_cap and not principal.is_admin:
        raise OperatorForbiddenError("Only an admin may override an operator's cap.")
    target = await operator_named(session, operator_id=request.operator_id, name=request.operator_name)
    operator = await active_operator_locked(session, operator_id=target)  # the operator before the order
    if operator.role == OperatorRole.SUPPORT.value:
        raise OperatorForbiddenError(
            f"{operator.name} is support and holds no orders.", extra={"operator_id": operator.id}
        )
    order = await load_order(session, order_id=order_id, for_update=True)
    if principal.acted_for and await repository.open_escalation(session, order_id=order.id) is None:
        # The bot offers Reassign on an escalated order's card only: a leaked gateway key naming a support
        # member's Telegram id moves no other order.
        raise ActedForIdentityForbiddenError(
            "Acting for support, only an escalated order can be reassigned; use your own credential.",
            extra={"credential": principal.credential},
        )
    if order.operator_id == operator.id and order.status == OrderStatus.IN_PROGRESS:
        return await _read(session, protection=protection, order=order)
    if not request.override_cap and not await room_for_one_more(
        session, settings=settings, operator=operator
    ):
        raise await at_capacity(session, settings=settings, operator=operator)
    await lifecycle.reassign(
        session,
        protection=protection,
        order=order,
        operator=operator,
        actor=principal.actor,
        comment=request.comment,
        expected_version=expected_version,
    )
    return await _read(session, protection=protection, order=order)


def read_escalation(escalation: Escalation) -> EscalationRead:
    return EscalationRead.model_validate(escalation, from_attributes=True)


def _comment(principal: OperatorPrincipal, body: str) -> EscalationComment:
    actor = principal.actor
    return EscalationComment(
        author=actor.label,
        author_name=principal.name,
        author_role=principal.role,
        channel=principal.channel,
        body=body,
        created_at=utcnow(),
    )


async def _add_to_thread(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    escalation: Escalation,
    principal: OperatorPrincipal,
    event_type: str,
    comment: str,
    details: dict[str, Any] | None = None,
) -> EscalationRead:
    """Append ``comment`` to the escalation's thread and record the step on the order (event, audit), with
    ``details`` (a hold's reason and deposit) in its history, audit row and event."""
    escalation.comments.append(_comment(principal, comment))
    await session.flush()
    await lifecycle.record_order_action(
        session,
        protection=protection,
        order=order,
        actor=principal.actor,
        event_type=event_type,
        from_status=order.status,
        comment=comment,
        details={"escalation_id": escalation.id, **(details or {})},
        extra={"escalation_id": escalation.id, "escalation_status": escalation.status, **(details or {})},
    )
    return read_escalation(escalation)


async def escalate_order(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    principal: OperatorPrincipal,
    order_id: str,
    request: EscalationCreate,
) -> EscalationRead:
    """The holder pulls support into an order: the order is flagged and a comment thread starts; the
    notifier tells support. A hold over a payment the operator cannot settle names its ``reason`` and may
    record the ``deposit`` as seen on the order (a new version of it), for the completion to reuse."""
    order = await _order_to_drive(session, order_id=order_id, principal=principal)
    existing = await repository.open_escalation(session, order_id=order.id)
    if existing is not None:
        raise OrderAlreadyEscalatedError(
            "Comment on the open escalation instead.", extra={"escalation_id": existing.id}
        )
    details: dict[str, Any] = {"reason": request.reason}
    if request.deposit is not None:
        if order.status != OrderStatus.IN_PROGRESS:  # a closed order's record is final
            raise OrderTransitionError(
                f"A deposit is recorded on an order in progress; this one is {order.status}.",
                extra={"order_status": order.status},
            )
        deposit = transactions.deposit_columns(
            order, request.deposit, currencies=settings.currencies, field="deposit"
        )
        await lifecycle.record_changes(session, order=order, values=deposit)
        # the amounts only: the deposit's hash stays on the order (personal data, see transactions)
        details["transaction"] = transactions.without_hashes(transactions.recorded(order))
    escalation = Escalation(
        id=new_id(),
        order_id=order.id,
        status=EscalationStatus.OPEN.value,
        raised_by=principal.actor.label,
        raised_at=utcnow(),
        comments=[],
    )
    session.add(escalation)
    return await _add_to_thread(
        session,
        protection=protection,
        order=order,
        escalation=escalation,
        principal=principal,
        event_type=lifecycle.ORDER_ESCALATED,
        comment=request.comment,
        details=details,
    )


async def _load_escalation(session: AsyncSession, *, escalation_id: str) -> Escalation:
    escalation = await repository.escalation_for_update(session, escalation_id=escalation_id)
    if escalation is None:
        raise EscalationNotFoundError(f"No escalation {escalation_id}.")
    return escalation


async def continue_escalation(
    *,
    session: AsyncSession,
    protection: DataProtection,
    principal: OperatorPrincipal,
    escalation_id: str,
    comment: str,
    resolve: bool,
) -> EscalationRead:
    """Support, an admin or the order's holder adds to an open escalation's thread; with ``resolve``
    (support and admins) the comment resolves the escalation: the flag is cleared and the thread ends."""
    escalation = await _load_escalation(session, escalation_id=escalation_id)
    order = await load_order(session, order_id=escalation.order_id)
    if principal.role == OperatorRole.OPERATOR.value:
        await _ensure_may_drive(session, order=order, principal=principal)
    if escalation.status != EscalationStatus.OPEN:
        raise EscalationNotOpenError("The escalation is resolved; escalate the order again if needed.")
    if resolve:
        escalation.status = EscalationStatus.RESOLVED.value
        escalation.resolved_by = principal.actor.label
        escalation.resolved_at = utcnow()
    step = lifecycle.ORDER_ESCALATION_RESOLVED if resolve else lifecycle.ORDER_ESCALATION_COMMENTED
    return await _add_to_thread(
        session,
        event_type=step,
        escalation=escalation,
        order=order,
        principal=principal,
        comment=comment,
        protection=protection,
    )


async def list_escalations(
    *, session: AsyncSession, status: EscalationStatus | None, cursor: str | None, limit: int
) -> EscalationPage:
    """Escalations for support, oldest first (open ones by default)."""
    rows = await repository.escalation_page(session, status=status, cursor=cursor, limit=limit)
    page, next_cursor = repository.ESCALATIONS.cut(rows, limit=limit)
    return EscalationPage(items=[read_escalation(e) for e in page], next_cursor=next_cursor)
