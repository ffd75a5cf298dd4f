"""Response bodies of ``/v1/alerts``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from notifier.alerts.models import AlertStatus, Severity
from servicekit.pagination import Page


@dataclass(frozen=True, kw_only=True)
class AlertFilter:
    """Which alerts a listing shows: those matching every filter given (``None``: any)."""

    status: AlertStatus | None = None
    severity: Severity | None = None
    key: str | None = None


class AlertRead(BaseModel):
    id: str
    key: str = Field(examples=["pool.low:BTC:bitcoin"], description="One live alert per key.")
    source: str = Field(examples=["pool.low"], description="The condition: pool.low, delivery.failure_rate.")
    status: AlertStatus
    severity: Severity = Field(description="The highest reached in this episode.")
    title: str
    text: str
    details: dict[str, Any] = Field(description="The figures last reported.")
    occurrences: int = Field(description="Reports of the condition, the first included.")
    reopened_count: int = Field(description="Times it came back within the quiet period.")
    raised_at: datetime
    escalated_at: datetime = Field(description="When the severity was last set.")
    acknowledged_at: datetime | None
    acknowledged_by: str | None = Field(description="The API key's name that acknowledged it.")
    resolved_at: datetime | None
    resolution: str | None = Field(description="How it ended.")
    resolution_notified_at: datetime | None = Field(
        description="When its resolution was told; null while a resolution waits out the quiet period."
    )
    updated_at: datetime


class AlertPageRead(Page[AlertRead]):
    """Alerts, newest first (by when first raised)."""
