"""The ``wallet`` table."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime, utcnow
from wallet_pool.db import Base


class WalletStatus(enum.StrEnum):
    FREE = "free"
    RESERVED = "reserved"
    DISABLED = "disabled"


class Wallet(Base):
    """One deposit address. ``reserved`` wallets hold exactly one order; ``free`` ones wait FIFO by
    ``released_at`` (never-used first) so wear spreads evenly and a just-released address is not reused at once."""

    __tablename__ = "wallet"
    __table_args__ = (
        CheckConstraint("status IN ('free', 'reserved', 'disabled')", name="status_known"),
        CheckConstraint("(status = 'reserved') = (order_id IS NOT NULL)", name="reserved_iff_order"),
        Index(
            "ix_wallet_free_fifo",
            "currency",
            "released_at",
            "id",
            postgresql_where=text("status = 'free'"),
            sqlite_where=text("status = 'free'"),
        ),
        Index(
            "uq_wallet_order_id",
            "order_id",
            unique=True,
            postgresql_where=text("order_id IS NOT NULL"),
            sqlite_where=text("order_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    currency: Mapped[str] = mapped_column(String(10), index=True)
    network: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(String(128), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=WalletStatus.FREE, server_default="free")
    order_id: Mapped[str | None] = mapped_column(String(36))
    reserved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    allocation_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
