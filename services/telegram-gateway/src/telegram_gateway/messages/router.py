"""``POST /v1/messages``: the notifier's order cards and alerts (contract B)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.openapi import INTERNAL
from telegram_gateway.context import Ctx
from telegram_gateway.messages import service
from telegram_gateway.messages.schemas import MessageCreate, MessageDeliveryRead

router = APIRouter(prefix="/v1/messages", tags=["messages"])

CanSend = Annotated[Caller, Depends(require_scope("messages:send"))]


@router.post(
    "",
    operation_id="postMessage",
    openapi_extra=INTERNAL,
    summary="Post an order card or an alert to Telegram",
    description=(
        "`order.created` posts the order's card (edits it when the order already has one: one card per "
        "order); `order.released` and `order.assignment_timed_out` post a new card to the chat (back in the "
        "pool). **Take** on an order awaiting its deposit; a queued order's card, or one whose address is "
        "still being prepared, has no button and no queue position; `order.taken`, "
        "`order.status_changed` and `order.escalation_resolved` edit every card of the order; "
        "`order.escalated` edits them and posts a card to the support chat. A card never shows an older "
        "`version` over a newer one. Idempotent by `message_id`: a repeat sends nothing and answers "
        "`duplicate`. `409 telegram_disabled` (no token or chat) and `409 telegram_rejected` are "
        "permanent; `503 telegram_unavailable` is transient (retry, after `Retry-After` when given). "
        "Scope `messages:send`."
    ),
    response_model=MessageDeliveryRead,
    responses=problem_responses(401, 403, 409, 422, 503),
)
async def post_message(
    body: MessageCreate,
    session: DbSession,
    ctx: Ctx,
    _caller: CanSend,
) -> MessageDeliveryRead:
    return await service.deliver_message(
        session=session, bot=ctx.telegram.bot, settings=ctx.settings, metrics=ctx.metrics, request=body
    )
