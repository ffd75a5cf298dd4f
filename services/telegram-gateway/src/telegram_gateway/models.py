"""Every table of telegram-gateway, imported in one place for Alembic and tests."""

from telegram_gateway.db import inbox, metadata

__all__ = ["inbox", "metadata"]
