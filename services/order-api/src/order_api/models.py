"""Every table of order-api, imported in one place for Alembic and tests."""

from order_api.db import inbox, metadata, outbox

__all__ = ["inbox", "metadata", "outbox"]
