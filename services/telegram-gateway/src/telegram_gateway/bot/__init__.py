"""The aiogram bot: its lifecycle inside the service, the webhook route and the update handlers."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

from aiogram.types import TelegramObject

NextHandler: TypeAlias = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
"""What an aiogram middleware hands the update on to."""
