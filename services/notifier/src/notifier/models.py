"""Every table of notifier, imported in one place for Alembic and tests."""

from notifier.alerts.models import Alert
from notifier.db import inbox, metadata
from notifier.notifications.models import DeliveryAttempt, Notification
from notifier.webhooks.models import WebhookEndpoint

__all__ = ["Alert", "DeliveryAttempt", "Notification", "WebhookEndpoint", "inbox", "metadata"]
