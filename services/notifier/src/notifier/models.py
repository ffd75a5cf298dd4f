"""Every table of notifier, imported in one place for Alembic and tests."""

from notifier.alerts.models import Alert
from notifier.db import inbox, metadata
from notifier.notifications.models import DeliveryAttempt, Notification

__all__ = ["Alert", "DeliveryAttempt", "Notification", "inbox", "metadata"]
