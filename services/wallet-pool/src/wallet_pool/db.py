"""wallet-pool's schema, metadata and declarative base."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from servicekit.db import new_metadata
from servicekit.outbox import outbox_table

SCHEMA = "wallet_pool"
metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata


outbox = outbox_table(metadata)
