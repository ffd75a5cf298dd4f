"""telegram-gateway's schema, metadata and declarative base."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

from servicekit.db import new_metadata

SCHEMA = "telegram_gateway"
metadata = new_metadata()


class Base(DeclarativeBase):
    metadata = metadata
