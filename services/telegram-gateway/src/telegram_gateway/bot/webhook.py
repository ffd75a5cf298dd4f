"""``POST /telegram/webhook``: updates from Telegram, authenticated by the secret token given to
``setWebhook`` and rate-limited per client address before anything else is looked at."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel

from servicekit.errors import DomainError, problem_responses
from telegram_gateway.context import Ctx
from telegram_gateway.dependencies import ClientIp

router = APIRouter(tags=["telegram"])


class WebhookAck(BaseModel):
    ok: bool = True


@router.post(
    "/telegram/webhook",
    operation_id="receiveTelegramUpdate",
    summary="Receive an update from Telegram",
    description=(
        "Telegram's webhook. `X-Telegram-Bot-Api-Secret-Token` must equal the configured secret "
        "(compared in constant time); a request without it, or with a wrong one, is `401` and reaches no "
        "handler. Rate-limited per client address (`429`). `409` when the bot is off or polls instead. "
        "The update is handled before the answer."
    ),
    response_model=WebhookAck,
    responses=problem_responses(401, 409, 422, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": "A Telegram Update (Bot API)."},
                    "example": {
                        "update_id": 10001,
                        "message": {
                            "message_id": 7,
                            "date": 1767225600,
                            "chat": {"id": 42, "type": "private"},
                            "from": {"id": 42, "is_bot": False, "first_name": "Ann"},
                            "text": "/start 7KQ2M9XD",
                        },
                    },
                }
            },
        }
    },
)
async def receive_update(
    request: Request,
    ctx: Ctx,
    client: ClientIp,
    secret: Annotated[
        str | None,
        Header(alias="X-Telegram-Bot-Api-Secret-Token", description="The secret token given to setWebhook."),
    ] = None,
) -> WebhookAck:
    try:
        await ctx.rate_limiter.hit(
            name="telegram:webhook", identifier=client, limit=ctx.settings.webhook_rate_limit, fail_open=True
        )
        ctx.telegram.verify_secret(secret)  # before the body is even read
        await ctx.telegram.receive_update(await request.body())
    except DomainError as error:
        ctx.metrics.webhook_requests.labels(error.code).inc()
        raise
    ctx.metrics.webhook_requests.labels("accepted").inc()
    return WebhookAck()
