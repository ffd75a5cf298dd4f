"""wallet-pool's schema, metadata and declarative base."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from servicekit.db import new_metadata
from servicekit.outbox import inbox_table, outbox_table

SCHEMA = "wallet_pool"
metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


outbox = outbox_table(metadata)
inbox = inbox_table(metadata)  # order-api's events (order.closed) already processed
