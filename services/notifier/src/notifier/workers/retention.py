"""How long the notifier keeps what it sent: finished notifications and every delivery attempt."""

from __future__ import annotations

from datetime import timedelta

from notifier.notifications.models import DeliveryAttempt, Notification, NotificationStatus
from notifier.settings import Settings
from servicekit.retention import RetentionRule

FINISHED = (NotificationStatus.sent.value, NotificationStatus.dead.value)
"""Notifications nothing will try to deliver again; pending and failed ones (awaiting a retry) are kept."""


def notification_retention(settings: Settings) -> list[RetentionRule]:
    """Delivery attempts past their retention, then sent and dead notifications past theirs (with their
    remaining attempts: ``ON DELETE CASCADE``)."""
    attempts = DeliveryAttempt.__table__
    notifications = Notification.__table__
    return [
        RetentionRule(
            name="delivery attempts",
            table=attempts,
            timestamp=attempts.c.started_at,
            keep=timedelta(days=settings.delivery_attempt_retention_days),
        ),
        RetentionRule(
            name="notifications finished",
            table=notifications,
            timestamp=notifications.c.created_at,
            keep=timedelta(days=settings.notification_retention_days),
            finished=notifications.c.status.in_(FINISHED),
        ),
    ]
