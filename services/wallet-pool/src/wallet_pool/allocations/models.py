"""The ``allocation`` and ``wait_queue_entry`` tables.

``allocation`` is the one record per order id wallet-pool has ever heard of: ``queued`` (waiting for an
address), ``allocated`` (holding one) or ``released`` (closed for good; an order never gets a second address).
A release for an order id wallet-pool never saw writes a **tombstone**: a ``released`` row with no currency,
so an allocation request arriving late for that order is refused. Keeping tombstones in the same table (one
primary key per order id) is what serialises a late allocation against the release that closed it.

``wait_queue_entry`` is the wait queue itself, one row per waiting order, served per pool (currency, network)
by ``priority DESC, enqueued_at, id``.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import CheckConstraint, Index, Integer, SmallInteger, String, Table, text
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from wallet_pool.db import Base


class AllocationStatus(enum.StrEnum):
    QUEUED = "queued"
    ALLOCATED = "allocated"
    RELEASED = "released"


class Priority(enum.IntEnum):
    """How far ahead in the wait queue an order stands; stored as this integer rank (higher is served first)."""

    NORMAL = 0
    PRIORITY = 1
    VIP = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Priority:
        return cls[label.upper()]


class Allocation(Base):
    """What wallet-pool answers about one order."""

    __tablename__ = "allocation"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'allocated', 'released')", name="status_known"),
        CheckConstraint("(status = 'allocated') = (wallet_id IS NOT NULL)", name="allocated_iff_wallet"),
        CheckConstraint("status = 'released' OR currency IS NOT NULL", name="only_tombstones_lack_currency"),
    )

    order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str | None] = mapped_column(String(10), comment="NULL only for a tombstone.")
    network: Mapped[str | None] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16))
    wallet_id: Mapped[int | None] = mapped_column(Integer, comment="The wallet held while allocated.")
    address: Mapped[str | None] = mapped_column(
        String(128), comment="The address held (kept after release, for the record)."
    )
    handed_to_order_id: Mapped[str | None] = mapped_column(
        String(64), comment="The waiting order the released wallet went to at once, if any."
    )
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    allocated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)


class WaitQueueEntry(Base):
    """One order waiting for an address of its pool."""

    __tablename__ = "wait_queue_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    currency: Mapped[str] = mapped_column(String(10))
    network: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(SmallInteger)
    enqueued_at: Mapped[datetime] = mapped_column(UtcDateTime)


allocation_table = cast(Table, Allocation.__table__)
wait_queue_table = cast(Table, WaitQueueEntry.__table__)

# The queue in serving order, per pool.
Index(
    "ix_wait_queue_entry_serving_order",
    wait_queue_table.c.currency,
    wait_queue_table.c.network,
    wait_queue_table.c.priority.desc(),
    wait_queue_table.c.enqueued_at,
    wait_queue_table.c.id,
)

# Queue analytics (``GET /v1/stats/queue``) read the orders that entered the queue in a window. Partial: only
# queued orders have an entry, so the common allocation (never queued) writes nothing more.
Index(
    "ix_allocation_enqueued_at",
    allocation_table.c.enqueued_at,
    postgresql_where=text("enqueued_at IS NOT NULL"),
    sqlite_where=text("enqueued_at IS NOT NULL"),
)
