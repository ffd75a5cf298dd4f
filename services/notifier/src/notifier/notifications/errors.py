"""Errors of the notifications routes."""

from __future__ import annotations

from servicekit.errors import ConflictError, NotFoundError


class NotificationNotFoundError(NotFoundError):
    code = "notification_not_found"
    title = "No notification has that id"


class NotificationNotRedeliverableError(ConflictError):
    code = "notification_not_redeliverable"
    title = "Only a failed or dead notification can be redelivered"
