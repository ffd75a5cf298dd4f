"""Errors of the notifications routes."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, DomainError, NotFoundError


class NotificationNotFoundError(NotFoundError):
    code = ErrorCode.NOTIFICATION_NOT_FOUND
    title = "No notification has that id"


class NotificationNotRedeliverableError(ConflictError):
    code = ErrorCode.NOTIFICATION_NOT_REDELIVERABLE
    title = "Only a failed or dead notification can be redelivered"


class EventSealedFieldsUnreadableError(DomainError):
    """An event's sealed personal data does not open with this service's event keys: a key configuration
    problem (the publisher's current key is not in this ring yet), so the publisher retries rather than
    dead-letters at once."""

    status = 503
    code = ErrorCode.EVENT_SEALED_FIELDS_UNREADABLE
    title = "The event's sealed fields do not open with the event keys configured here"
