"""``alert``: one row per episode of a condition (a pool running low, a channel failing), found by its key.

At most one row per key is live (``open`` or ``acknowledged``): a partial unique index guarantees it, so
concurrent raises (several replicas, several events) make one alert. Resolved rows stay as history; the
latest one of a key is reopened when the condition comes back within the quiet period.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from notifier.db import Base
from servicekit.db import UtcDateTime


class AlertStatus(enum.StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Severity(enum.StrEnum):
    """Mildest first: a move to a later member is an escalation."""

    warning = "warning"
    critical = "critical"
    emergency = "emergency"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> Severity:
        return self if self.rank >= other.rank else other


LIVE = "status <> 'resolved'"


class Alert(Base):
    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), comment="What is alerted on, e.g. pool.low:BTC:bitcoin.")
    source: Mapped[str] = mapped_column(String(64), comment="The condition: pool.low, delivery.failure_rate.")
    status: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16), comment="The highest reached in this episode.")
    title: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, comment="The figures last reported.")
    occurrences: Mapped[int] = mapped_column(Integer, comment="Reports of the condition, the first included.")
    reopened_count: Mapped[int] = mapped_column(
        Integer, comment="Times it came back within the quiet period."
    )
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    escalated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, comment="When the severity was last set: the clock of time-based escalation."
    )
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolution: Mapped[str | None] = mapped_column(Text, nullable=True)
    resolution_notified_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, nullable=True, comment="Null while a resolution waits out the quiet period untold."
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index(
            "uq_alert_live_key",
            "key",
            unique=True,
            postgresql_where=sql_text(LIVE),
            sqlite_where=sql_text(LIVE),
        ),
        Index("ix_alert_key_resolved_at", "key", "resolved_at"),
        Index("ix_alert_due", "status", "escalated_at"),
        Index("ix_alert_raised_at", "raised_at", "id"),
    )
