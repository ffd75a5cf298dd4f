"""``/v1/telegram``: what the Telegram gateway asks of order-api for itself, not for a linked operator."""

from __future__ import annotations

from fastapi import APIRouter

from order_api.auth.dependencies import AppSettings, Protection, RateLimits
from order_api.operators import telegram_links
from order_api.operators.dependencies import TelegramGateway
from order_api.operators.schemas import TelegramLinkCreate, TelegramLinkRead
from servicekit.app import DbSession
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/telegram", tags=["operators"])


@router.post(
    "/links",
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
    settings: AppSettings,
    protection: Protection,
    rate_limiter: RateLimits,
    gateway: TelegramGateway,
) -> TelegramLinkRead:
    return await telegram_links.link_telegram_account(
        session=session,
        settings=settings,
        protection=protection,
        rate_limiter=rate_limiter,
        gateway=gateway,
        request=body,
    )
