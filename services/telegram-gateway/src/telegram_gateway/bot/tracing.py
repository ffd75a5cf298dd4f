"""One trace per Telegram update: every call the bot makes for one press or message (order-api's retries
included) and every log line it writes carry the same trace id, the update's correlation id.

In webhook mode the update arrives as an HTTP request, whose server span is already current; in polling mode
nothing is, and each attempt of each call would start a trace of its own. The span opened here for every
update, as the dispatcher's outermost middleware, is the root in polling mode and the request's child in
webhook mode.
"""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject, Update
from opentelemetry import trace

from servicekit.telemetry import tracer_provider
from telegram_gateway.bot import NextHandler


class UpdateSpanMiddleware(BaseMiddleware):
    """Opens a ``telegram update`` span around the handling of each update."""

    def __init__(self) -> None:
        self._tracer: trace.Tracer | None = None  # resolved at the first update, once tracing is configured

    async def __call__(self, handler: NextHandler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if self._tracer is None:
            self._tracer = trace.get_tracer("telegram_gateway.bot", tracer_provider=tracer_provider())
        attributes: dict[str, str | int] = {"messaging.system": "telegram"}
        if isinstance(event, Update):
            attributes["messaging.message.id"] = event.update_id
            attributes["telegram.update.type"] = event.event_type
        with self._tracer.start_as_current_span(
            "telegram update", kind=trace.SpanKind.CONSUMER, attributes=attributes
        ):
            return await handler(event, data)
