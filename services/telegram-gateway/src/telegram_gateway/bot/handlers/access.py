"""Who is writing: every message and button press is looked up in ``operator_link`` before any handler runs.

Handlers of operators' work take ``operator`` (an :class:`OperatorLink`); a Telegram user with no link
reaches only ``/start``, ``/help`` and the polite refusal, never order-api.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.filters import Filter
from aiogram.types import TelegramObject, User

from servicekit.db import Database
from telegram_gateway.operators.models import OperatorLink
from telegram_gateway.operators.service import find_link

REFUSAL = (
    "Sorry, this bot works only for the exchange desk's operators. If you are one, ask an admin for a "
    "link code and send it to me: /start <code>"
)
UNREACHABLE = "order-api is unreachable, try again in a moment."
"""Plain text (callback answers have no parse mode); escape it for a message."""


class OperatorLinkMiddleware(BaseMiddleware):
    """Puts ``operator`` (the sender's link, or ``None``) into the handler data."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("event_from_user")
        data["operator"] = (
            None if user is None else await find_link(database=self.database, telegram_user_id=user.id)
        )
        return await handler(event, data)


class LinkedOperator(Filter):
    """Passes updates from linked Telegram users only."""

    async def __call__(self, event: TelegramObject, operator: OperatorLink | None = None) -> bool:
        return operator is not None
