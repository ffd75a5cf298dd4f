"""Every table of notifier, imported in one place for Alembic and tests."""

from notifier.db import inbox, metadata

__all__ = ["inbox", "metadata"]
