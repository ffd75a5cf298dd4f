"""``/v1/admin/operators``: admins manage staff accounts and their personal tokens. Every change is audited."""

from __future__ import annotations

from fastapi import APIRouter, status

from order_api.context import Ctx
from order_api.operators import schemas, service, telegram_links, workload
from order_api.operators.dependencies import AdminStaff
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam

router = APIRouter(prefix="/v1/admin/operators", tags=["admin"])


@router.post(
    "",
    operation_id="createOperator",
    summary="Create an operator",
    description="Returns the operator with a personal token (`op_…`) shown only in this response; only its "
    "hash is stored. `telegram_user_id` lets the Telegram gateway act for them. Admins only.",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.OperatorCreated,
    responses=problem_responses(401, 403, 409, 422),
)
async def create_operator(
    body: schemas.OperatorCreate, session: DbSession, ctx: Ctx, admin: AdminStaff
) -> schemas.OperatorCreated:
    return await service.create_operator(
        session=session, settings=ctx.settings, actor=admin.actor, request=body
    )


@router.get(
    "",
    operation_id="listOperators",
    summary="List operators",
    description="Oldest first, a page at a time.",
    response_model=schemas.OperatorPage,
    responses=problem_responses(401, 403, 422),
)
async def list_operators(
    session: DbSession, _admin: AdminStaff, cursor: CursorParam = None, limit: LimitParam = DEFAULT_PAGE_SIZE
) -> schemas.OperatorPage:
    return await service.operator_page(session=session, cursor=cursor, limit=limit)


@router.get(
    "/{operator_id}",
    operation_id="getOperator",
    summary="Read an operator",
    response_model=schemas.OperatorRead,
    responses=problem_responses(401, 403, 404),
)
async def get_operator(operator_id: str, session: DbSession, _admin: AdminStaff) -> schemas.OperatorRead:
    return await service.get_operator(session=session, operator_id=operator_id)


@router.patch(
    "/{operator_id}",
    operation_id="updateOperator",
    summary="Change an operator",
    description="Rename, change the role, link or unlink Telegram (`telegram_user_id: null`), set their cap "
    "on held orders (`max_held_orders`; `null`: the desk's default), deactivate (`active: false`: nothing "
    "works for them any more, token and Telegram alike, and the orders they hold return to the pool at once, "
    "announced as `order.released` by the admin).",
    response_model=schemas.OperatorRead,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def update_operator(
    operator_id: str, body: schemas.OperatorUpdate, session: DbSession, ctx: Ctx, admin: AdminStaff
) -> schemas.OperatorRead:
    return await workload.change_operator(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        actor=admin.actor,
        operator_id=operator_id,
        request=body,
    )


@router.post(
    "/{operator_id}/rotate-token",
    operation_id="rotateOperatorToken",
    summary="Issue a new personal token",
    description="The new token is shown only in this response; the previous one stops working at once.",
    response_model=schemas.OperatorTokenRead,
    responses=problem_responses(401, 403, 404),
)
async def rotate_operator_token(
    operator_id: str, session: DbSession, ctx: Ctx, admin: AdminStaff
) -> schemas.OperatorTokenRead:
    return await service.rotate_operator_token(
        session=session, settings=ctx.settings, actor=admin.actor, operator_id=operator_id
    )


@router.post(
    "/{operator_id}/revoke-token",
    operation_id="revokeOperatorToken",
    summary="Revoke the personal token",
    description="The token stops working at once (`401`); a linked Telegram account keeps working unless "
    "the operator is deactivated.",
    response_model=schemas.OperatorRead,
    responses=problem_responses(401, 403, 404),
)
async def revoke_operator_token(
    operator_id: str, session: DbSession, admin: AdminStaff
) -> schemas.OperatorRead:
    return await service.revoke_operator_token(session=session, actor=admin.actor, operator_id=operator_id)


@router.post(
    "/{operator_id}/telegram-link-code",
    operation_id="issueTelegramLinkCode",
    summary="Issue a one-time Telegram link code",
    description="The code is shown only in this response and is valid for "
    "`ORDER_API_TELEGRAM_LINK_CODE_TTL_SECONDS` (15 minutes by default); the operator sends `/start <code>` "
    "to the bot to link their Telegram account. A new code replaces the operator's unused ones. "
    "`409 operator_inactive` for a deactivated operator.",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.TelegramLinkCodeRead,
    responses=problem_responses(401, 403, 404, 409),
)
async def issue_telegram_link_code(
    operator_id: str, session: DbSession, ctx: Ctx, admin: AdminStaff
) -> schemas.TelegramLinkCodeRead:
    return await telegram_links.issue_telegram_link_code(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        actor=admin.actor,
        operator_id=operator_id,
    )
