"""``/v1/operator``: the operator's work on orders, support's escalations, workload stats. Thin: parse,
call one service function, shape the response. Only the work on orders (``OrderReader``, ``OrderHandler``)
may be done by the Telegram gateway acting for an operator; the rest needs the person's own credential."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, status

from order_api.context import Ctx
from order_api.operators import stats, workflow
from order_api.operators.dependencies import CurrentOperator, OrderHandler, OrderReader, SupportStaff
from order_api.operators.models import EscalationStatus
from order_api.operators.schemas import (
    EscalationCommentCreate,
    EscalationCreate,
    EscalationPage,
    EscalationRead,
    EscalationResolutionCreate,
    OperatorOrderDetail,
    OperatorOrderFilter,
    OperatorOrderPage,
    OperatorOrderRead,
    OperatorStatsRead,
    OrderReleaseCreate,
    OrderStatusUpdate,
)
from order_api.orders.router import IfMatch
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam

router = APIRouter(prefix="/v1/operator", tags=["operators"])
OrderQuery = Annotated[OperatorOrderFilter, Query()]


@router.get(
    "/orders",
    operation_id="listOperatorOrders",
    summary="List takeable orders",
    description="Orders awaiting their deposit that nobody holds, oldest first (any status with `status`), "
    "filtered by currency, amount range and creation time. Cursor pages stay correct while orders are taken "
    "and created. Every role.",
    response_model=OperatorOrderPage,
    responses=problem_responses(401, 403, 422),
)
async def list_orders(
    session: DbSession, ctx: Ctx, _staff: OrderReader, query: OrderQuery
) -> OperatorOrderPage:
    return await workflow.list_orders(session=session, protection=ctx.protection, query=query)


@router.get(
    "/orders/mine",
    operation_id="listMyOperatorOrders",
    summary="List my orders",
    description="The orders I hold (`in_progress` by default; `status=completed` for those I closed), oldest "
    "first, with the same filters and paging as the takeable list.",
    response_model=OperatorOrderPage,
    responses=problem_responses(401, 403, 422),
)
async def list_my_orders(
    session: DbSession, ctx: Ctx, principal: OrderReader, query: OrderQuery
) -> OperatorOrderPage:
    return await workflow.list_my_orders(
        session=session, protection=ctx.protection, principal=principal, query=query
    )


@router.get(
    "/orders/{order_id}",
    operation_id="getOperatorOrder",
    summary="Read an order",
    description="With its holder, its open escalation and up to 10 earlier orders that had the same deposit "
    "address (a late deposit may belong to one of them).",
    response_model=OperatorOrderDetail,
    responses=problem_responses(401, 403, 404),
)
async def get_order(order_id: str, session: DbSession, ctx: Ctx, _staff: OrderReader) -> OperatorOrderDetail:
    return await workflow.get_order(session=session, protection=ctx.protection, order_id=order_id)


@router.post(
    "/orders/{order_id}/take",
    operation_id="takeOrder",
    summary="Take an order",
    description="Only an order `awaiting_deposit` that nobody holds; it becomes `in_progress`, held by you. "
    "Of concurrent takers exactly one wins; the others get `409 order_already_taken` with `held_by`. "
    "Taking an order you already hold changes nothing. Roles operator and admin (with an operator account). "
    "Holding as many orders as your cap allows (`ORDER_API_OPERATOR_MAX_HELD_ORDERS`, or your own), a take is "
    "`409 operator_at_capacity`.",
    response_model=OperatorOrderRead,
    responses=problem_responses(401, 403, 404, 409),
)
async def take_order(
    order_id: str, session: DbSession, ctx: Ctx, principal: OrderHandler
) -> OperatorOrderRead:
    return await workflow.take_order(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        principal=principal,
        order_id=order_id,
        metrics=ctx.metrics,
    )


@router.post(
    "/orders/{order_id}/status",
    operation_id="changeOrderStatus",
    summary="Change an order's status",
    description="`completed` or `cancelled` (the deposit address returns to the pool, even if wallet-pool is "
    "down right now), or `awaiting_deposit` to give it back. Only the holder, or an admin; only the "
    "transitions of the order lifecycle (`409 order_transition_not_allowed`). A stale `If-Match` is `412`.\n\n"
    "Completing records the `transaction`: the deposit (hash in the `from_network`'s format, amount received, "
    "when seen) and the payout (hash, amount sent, network fee). Without one: `422 transaction_required` "
    "(unless `ORDER_API_COMPLETION_TRANSACTION_REQUIRED` is off); a malformed field: `422 transaction_invalid` "
    "naming it. A deposit other than the ordered `amount` is `409 payment_mismatch` (with `ordered`, "
    "`received` and `difference`: `underpaid` or `overpaid`) and changes nothing, unless `payment_difference` "
    "is `adjusted_payout`: the order then completes with that outcome. The deposit may be left out when a hold "
    "(`escalate` with `deposit`) recorded it.",
    response_model=OperatorOrderRead,
    responses=problem_responses(401, 403, 404, 409, 412, 422),
)
async def change_order_status(
    order_id: str,
    body: OrderStatusUpdate,
    session: DbSession,
    ctx: Ctx,
    principal: OrderHandler,
    if_match: IfMatch = None,
) -> OperatorOrderRead:
    return await workflow.change_order_status(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        principal=principal,
        order_id=order_id,
        request=body,
        expected_version=if_match,
        metrics=ctx.metrics,
    )


@router.post(
    "/orders/{order_id}/release",
    operation_id="releaseOrder",
    summary="Give an order back",
    description="The held order returns to `awaiting_deposit`, takeable by anyone, and operators are told "
    "(`order.released`). Only the holder, or an admin.",
    response_model=OperatorOrderRead,
    responses=problem_responses(401, 403, 404, 409, 412, 422),
)
async def release_order(
    order_id: str,
    session: DbSession,
    ctx: Ctx,
    principal: OrderHandler,
    body: Annotated[OrderReleaseCreate | None, Body()] = None,
    if_match: IfMatch = None,
) -> OperatorOrderRead:
    return await workflow.give_back_order(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        principal=principal,
        order_id=order_id,
        comment=body.comment if body else None,
        expected_version=if_match,
    )


@router.post(
    "/orders/{order_id}/escalate",
    operation_id="escalateOrder",
    summary="Escalate an order to support",
    description="Flags the order and starts a comment thread; support is notified (`order.escalated`). "
    "Only the holder, or an admin; one open escalation per order. A hold over a payment the operator cannot "
    "settle names its `reason` (`underpaid`, `overpaid`; default `other`) and may record the `deposit` as seen "
    "(validated as on completion; the order's version is bumped), which the completion may then leave out.",
    status_code=status.HTTP_201_CREATED,
    response_model=EscalationRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def escalate_order(
    order_id: str, body: EscalationCreate, session: DbSession, ctx: Ctx, principal: OrderHandler
) -> EscalationRead:
    return await workflow.escalate_order(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        principal=principal,
        order_id=order_id,
        request=body,
    )


@router.get(
    "/escalations",
    operation_id="listEscalations",
    summary="List escalations",
    description="Open ones by default, oldest first, with their threads. Roles support and admin.",
    response_model=EscalationPage,
    responses=problem_responses(401, 403, 422),
)
async def list_escalations(
    session: DbSession,
    _support: SupportStaff,
    escalation_status: Annotated[EscalationStatus | None, Query(alias="status")] = EscalationStatus.OPEN,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> EscalationPage:
    return await workflow.list_escalations(
        session=session, status=escalation_status, cursor=cursor, limit=limit
    )


@router.post(
    "/escalations/{escalation_id}/comments",
    operation_id="commentOnEscalation",
    summary="Comment on an escalation",
    description="Support, admins and the order's holder add to an open escalation's thread.",
    status_code=status.HTTP_201_CREATED,
    response_model=EscalationRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def comment_on_escalation(
    escalation_id: str,
    body: EscalationCommentCreate,
    session: DbSession,
    ctx: Ctx,
    principal: CurrentOperator,
) -> EscalationRead:
    return await workflow.continue_escalation(
        resolve=False,
        session=session,
        protection=ctx.protection,
        principal=principal,
        escalation_id=escalation_id,
        comment=body.comment,
    )


@router.post(
    "/escalations/{escalation_id}/resolve",
    operation_id="resolveEscalation",
    summary="Resolve an escalation",
    description="Clears the order's flag; the comment ends the thread and the holder is notified "
    "(`order.escalation_resolved`). Roles support and admin.",
    response_model=EscalationRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def resolve_escalation(
    escalation_id: str,
    body: EscalationResolutionCreate,
    session: DbSession,
    ctx: Ctx,
    principal: SupportStaff,
) -> EscalationRead:
    return await workflow.continue_escalation(
        resolve=True,
        session=session,
        protection=ctx.protection,
        principal=principal,
        escalation_id=escalation_id,
        comment=body.comment,
    )


@router.get(
    "/stats",
    operation_id="getOperatorStats",
    summary="My workload next to the team's",
    description="Orders I completed or cancelled in the last `days`, my average handling time (taken to "
    "closed) and my open orders; the same for the whole team, anonymised, with my rank.",
    response_model=OperatorStatsRead,
    responses=problem_responses(401, 403, 422),
)
async def get_stats(
    session: DbSession,
    principal: CurrentOperator,
    days: Annotated[int, Query(ge=1, le=366, description="The period, in days up to now.")] = 30,
) -> OperatorStatsRead:
    return await stats.operator_stats(session=session, principal=principal, days=days)
