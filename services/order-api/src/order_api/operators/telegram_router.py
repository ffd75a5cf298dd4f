"""``/v1/telegram``: what the Telegram gateway asks of order-api for itself, not for a linked operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from order_api.context import Ctx
from order_api.operators import telegram_links
from order_api.operators.dependencies import TelegramGateway
from order_api.operators.schemas import TelegramLinkCreate, TelegramLinkRead
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.openapi import INTERNAL

router = APIRouter(prefix="/v1/telegram", tags=["operators"])


@router.post(
    "/links",
    operation_id="linkTelegramAccount",
    openapi_extra=INTERNAL,
    summary="Link a Telegram user to an operator with a one-time code",
    description="The Telegram gateway's key (scope `orders:act-as-operator`) only. Redeems the code an admin "
    "issued (`POST /v1/admin/operators/{operator_id}/telegram-link-code`) for the Telegram user who sent it: "
    "from now on `X-Operator-Telegram-Id` with that user's id acts as the operator. The code is spent. "
    "A wrong, expired or used code is `422 link_code_invalid` (the answer does not say which); a Telegram "
    "user linked to another operator is `409 operator_telegram_id_taken`; attempts are limited per Telegram "
    "user (`429` with `Retry-After`).",
    response_model=TelegramLinkRead,
    responses=problem_responses(401, 403, 409, 422, 429),
)
async def link_telegram_account(
    body: TelegramLinkCreate,
    session: DbSession,
    ctx: Ctx,
    gateway: TelegramGateway,
) -> TelegramLinkRead:
    return await telegram_links.link_telegram_account(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        rate_limiter=ctx.rate_limiter,
        gateway=gateway,
        request=body,
    )


@router.get(
    "/operators/{telegram_user_id}",
    operation_id="getTelegramLink",
    openapi_extra=INTERNAL,
    summary="Who a Telegram user is",
    description="The Telegram gateway's key (scope `orders:act-as-operator`) only. The active operator linked "
    "to this Telegram user, however the link was made (`/start <code>`, or an admin setting "
    "`telegram_user_id`); `404 telegram_link_not_found` when there is none (never linked, unlinked, or "
    "deactivated). order-api's operator record is the one truth; the gateway caches the answer briefly.",
    response_model=TelegramLinkRead,
    responses=problem_responses(401, 403, 404, 422),
)
async def read_telegram_link(
    telegram_user_id: Annotated[int, Path(gt=0, lt=2**63, description="A Telegram user id.")],
    session: DbSession,
    _gateway: TelegramGateway,
) -> TelegramLinkRead:
    return await telegram_links.read_telegram_link(session=session, telegram_user_id=telegram_user_id)
