"""Response body of ``GET /v1/stats/delivery``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from notifier.notifications.models import Channel


class LatencyRead(BaseModel):
    """Seconds from queueing to the provider accepting, over sent notifications (nearest-rank
    percentiles; null when none was sent)."""

    p50: float | None
    p95: float | None
    p99: float | None


class DeliveryFigures(BaseModel):
    notifications: int = Field(description="Notifications queued in the window.")
    sent: int
    pending: int = Field(description="Still waiting for a (first or next) attempt.")
    permanent: int = Field(
        description="Failed for good: refused or bounced, never retried (status `failed`)."
    )
    dead: int = Field(description="Dead-lettered after the last allowed attempt.")
    attempts: int = Field(description="Attempts made for them, whenever made.")
    failed_attempts: int = Field(
        description="Attempts that failed transiently (and were retried or led to dead)."
    )
    retries: int = Field(description="Attempts after a notification's first one.")
    failure_percent: float | None = Field(
        description="Failed attempts (transient and permanent) per 100 attempts; null without attempts."
    )
    latency_seconds: LatencyRead


class ChannelFigures(DeliveryFigures):
    channel: Channel


class TemplateFigures(DeliveryFigures):
    channel: Channel
    template: str = Field(description="The email template, or the Telegram message kind.")


class DeliveryStatsRead(BaseModel):
    since: datetime
    until: datetime
    channels: list[ChannelFigures]
    templates: list[TemplateFigures]
