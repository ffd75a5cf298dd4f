"""Who is writing: every message and button press is looked up (``OperatorLinks``: order-api's operator
record, briefly cached) before any handler runs.

Handlers of operators' work take ``operator`` (a :class:`LinkedOperator`); a Telegram user with no link
reaches only ``/start``, ``/help`` and the polite refusal, never order-api's operator routes. When order-api
cannot say who someone is (unreachable, nothing cached), a button press or a message to the bot is answered
"try again" and nothing else happens.
"""

from __future__ import annotations

from typing import Any

from aiogram import BaseMiddleware
from aiogram.enums import ChatType
from aiogram.filters import Filter
from aiogram.types import CallbackQuery, Message, TelegramObject, User

from servicekit.errors import PeerUnavailableError
from telegram_gateway.bot import NextHandler
from telegram_gateway.cards.render import html
from telegram_gateway.clients.order_api import LinkedOperator, OrderApiSlowError
from telegram_gateway.operators.service import OperatorLinks

REFUSAL = (
    "Sorry, this bot works only for the exchange desk's operators. If you are one, ask an admin for a "
    "link code and send it to me: /start <code>"
)
UNREACHABLE = "order-api is unreachable, try again in a moment."
"""Plain text (callback answers have no parse mode); escape it for a message."""
SLOW = "order-api is slow, try again."
"""When order-api gave no answer within the bot's budget (``order_api_budget_seconds``)."""


def unavailable(error: PeerUnavailableError) -> str:
    """What to tell an operator order-api could not serve: slow (no answer in time) or unreachable."""
    return SLOW if isinstance(error, OrderApiSlowError) else UNREACHABLE


class OperatorLinkMiddleware(BaseMiddleware):
    """Puts ``operator`` (the sender's linked operator, or ``None``) into the handler data."""

    def __init__(self, operator_links: OperatorLinks) -> None:
        self.operator_links = operator_links

    async def __call__(self, handler: NextHandler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        try:
            data["operator"] = (
                None if user is None else await self.operator_links.find(telegram_user_id=user.id)
            )
        except PeerUnavailableError as error:
            await _say_unavailable(event, unavailable(error))
            return None
        return await handler(event, data)


async def _say_unavailable(event: TelegramObject, text: str) -> None:
    if isinstance(event, CallbackQuery):
        await event.answer(text, show_alert=True)
    elif isinstance(event, Message) and (
        event.chat.type == ChatType.PRIVATE or (event.text or "").startswith("/")
    ):
        await event.answer(html(text))


class LinkedOnly(Filter):
    """Passes updates from linked Telegram users only."""

    async def __call__(self, event: TelegramObject, operator: LinkedOperator | None = None) -> bool:
        return operator is not None
