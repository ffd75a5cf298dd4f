"""The last router: whatever no other handler took. Unknown Telegram users are refused politely (commands
and private messages; other chatter in a group is ignored), and every button press is still answered."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.enums import ChatType
from aiogram.types import CallbackQuery, Message

from telegram_gateway.bot.handlers.access import REFUSAL
from telegram_gateway.cards.render import html
from telegram_gateway.clients.order_api import LinkedOperator
from telegram_gateway.metrics import GatewayMetrics

STALE_BUTTON = "This button is no longer valid. The card's current buttons work."
NOT_UNDERSTOOD = "I did not understand that. /help lists what I can do."


async def refuse_button(
    query: CallbackQuery, operator: LinkedOperator | None, metrics: GatewayMetrics
) -> None:
    if operator is None:
        metrics.callbacks.labels("any", "unknown_user").inc()
        await query.answer(REFUSAL, show_alert=True)
        return
    metrics.callbacks.labels("any", "stale").inc()
    await query.answer(STALE_BUTTON, show_alert=True)


async def refuse_message(message: Message, operator: LinkedOperator | None) -> None:
    await message.answer(html(REFUSAL) if operator is None else html(NOT_UNDERSTOOD))


def router() -> Router:
    refusals = Router(name="refusals")
    refusals.callback_query.register(refuse_button)
    refusals.message.register(refuse_message, F.chat.type == ChatType.PRIVATE)
    refusals.message.register(refuse_message, F.text.startswith("/"))
    return refusals
