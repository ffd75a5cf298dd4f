"""The ``wallet`` table."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import Boolean, CheckConstraint, Index, Integer, String, Table, false, text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime, utcnow
from wallet_pool.db import Base


class WalletStatus(enum.StrEnum):
    FREE = "free"
    RESERVED = "reserved"
    DISABLED = "disabled"


class Wallet(Base):
    """One deposit address. ``reserved`` wallets hold exactly one order; ``free`` ones wait FIFO by
    ``released_at`` (never-used first) so wear spreads evenly and a just-released address is not reused at once.

    A reserved wallet an operator disables keeps serving its order and is disabled when that order releases it
    (``disable_on_release``), instead of being handed to the next order."""

    __tablename__ = "wallet"
    __table_args__ = (
        CheckConstraint("status IN ('free', 'reserved', 'disabled')", name="status_known"),
        CheckConstraint("(status = 'reserved') = (order_id IS NOT NULL)", name="reserved_iff_order"),
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
    order_id: Mapped[str | None] = mapped_column(String(64))
    disable_on_release: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="Disabled while reserved: becomes disabled, not free, when its order releases it.",
    )
    reserved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    allocation_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


wallet_table = cast(Table, Wallet.__table__)
"""The same table for SQLAlchemy Core statements (the hot paths use Core, not the ORM unit of work)."""

# The FIFO pick over one pool's free wallets, in the order it is served: never used first, then free the
# longest, then by id. PostgreSQL needs NULLS FIRST in the index itself to walk it without a sort; SQLite
# sorts NULL first anyway and has no NULLS FIRST in index definitions, so its migration creates the plain form.
Index(
    "ix_wallet_free_fifo",
    wallet_table.c.currency,
    wallet_table.c.network,
    wallet_table.c.released_at.nulls_first(),
    wallet_table.c.id,
    postgresql_where=text("status = 'free'"),
)
