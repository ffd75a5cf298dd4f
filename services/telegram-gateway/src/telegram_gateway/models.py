"""Every table of telegram-gateway, imported in one place for Alembic and tests."""

from telegram_gateway.cards.models import OrderSnapshot, PostedMessage
from telegram_gateway.completions.models import CompletionDraft
from telegram_gateway.db import metadata
from telegram_gateway.messages.models import MessageDelivery

__all__ = ["CompletionDraft", "MessageDelivery", "OrderSnapshot", "PostedMessage", "metadata"]
