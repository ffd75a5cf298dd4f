"""``pool_level``: the level each pool was last seen at, so a crossing is announced once, not once per order."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from wallet_pool.db import Base


class Level(enum.StrEnum):
    """How short a pool is."""

    OK = "ok"
    LOW = "low"
    EMPTY = "empty"


class PoolLevel(Base):
    __tablename__ = "pool_level"

    currency: Mapped[str] = mapped_column(String(10), primary_key=True)
    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    level: Mapped[str] = mapped_column(String(8), comment="ok, low or empty (see wallet_pool.levels).")
    free: Mapped[int] = mapped_column(Integer, comment="Free wallets at the last look.")
    usable: Mapped[int] = mapped_column(Integer, comment="Wallets not disabled at the last look.")
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


pool_level_table = cast(Table, PoolLevel.__table__)
