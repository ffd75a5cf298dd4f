"""Workload balancing over REST: an operator's presence (``/v1/operator/presence``, for the bot's ``/on`` and
``/off`` too) and support's reassignment of a held order (``/v1/admin/orders/{order_id}/reassign``)."""

from __future__ import annotations

from fastapi import APIRouter

from order_api.context import Ctx
from order_api.operators import assignment, workflow, workload
from order_api.operators.dependencies import OrderHandler, OrderReader, OrderReassigner
from order_api.operators.schemas import (
    OperatorOrderDetail,
    OperatorOrderRead,
    OrderReassign,
    PresenceRead,
    PresenceUpdate,
)
from order_api.orders.router import IfMatch
from servicekit.app import DbSession
from servicekit.errors import problem_responses

router = APIRouter(tags=["operators"])


@router.get(
    "/v1/operator/presence",
    operation_id="getPresence",
    summary="My presence and load",
    description="Whether I am `available` or `away`, since when, how many orders I hold and my cap. Every "
    "role with an operator account (the Telegram gateway acting for me too).",
    response_model=PresenceRead,
    responses=problem_responses(401, 403),
)
async def get_presence(session: DbSession, ctx: Ctx, principal: OrderReader) -> PresenceRead:
    return await workload.read_presence(session=session, settings=ctx.settings, principal=principal)


@router.put(
    "/v1/operator/presence",
    operation_id="setPresence",
    summary="Mark myself available or away",
    description="`away` says I take no new work; I keep and still drive the orders I hold. The change is "
    "recorded with its time and audited (`operator.presence_changed`); setting the same status again changes "
    "nothing. The bot's `/on` and `/off` call this.",
    response_model=PresenceRead,
    responses=problem_responses(401, 403, 422),
)
async def set_presence(
    body: PresenceUpdate, session: DbSession, ctx: Ctx, principal: OrderReader
) -> PresenceRead:
    return await workload.set_presence(
        session=session, settings=ctx.settings, principal=principal, status=body.status
    )


@router.post(
    "/v1/admin/orders/{order_id}/reassign",
    operation_id="reassignOrder",
    summary="Hand a held order to another operator",
    description="Roles support and admin (the Telegram gateway acting for support too: the bot's reassign). "
    "Only an order `in_progress`; the target must be an active operator or admin (`409 operator_inactive`, "
    "`403 operator_forbidden` for support). Within the target's cap (`409 operator_at_capacity`), unless an "
    "admin sends `override_cap: true`. The status stays `in_progress`; the version moves on (a stale "
    "`If-Match` is `412`). Audited, and both operators are told (`order.reassigned`).",
    response_model=OperatorOrderRead,
    responses=problem_responses(401, 403, 404, 409, 412, 422),
)
async def reassign_order(
    order_id: str,
    body: OrderReassign,
    session: DbSession,
    ctx: Ctx,
    principal: OrderReassigner,
    if_match: IfMatch = None,
) -> OperatorOrderRead:
    return await workflow.reassign_order(
        order_id=order_id,
        request=body,
        expected_version=if_match,
        principal=principal,
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
    )


@router.post(
    "/v1/operator/orders/{order_id}/accept",
    operation_id="acceptOrder",
    summary="Accept an order assigned to me",
    description="An order auto-assigned to me (`ORDER_API_AUTO_ASSIGN`) returns to the pool at its "
    "`assignment.lapses_at` unless I act on it; accepting keeps it mine (any status change, escalation or "
    "comment does too). Audited (`order.assignment_accepted`). Accepting again, or an order I took myself, "
    "changes nothing; `409 order_not_held` when I do not hold it. The bot's Accept button calls this.",
    response_model=OperatorOrderDetail,
    responses=problem_responses(401, 403, 404, 409),
)
async def accept_order(
    order_id: str, session: DbSession, ctx: Ctx, principal: OrderHandler
) -> OperatorOrderDetail:
    return await assignment.accept_assignment(
        session=session, protection=ctx.protection, principal=principal, order_id=order_id
    )
