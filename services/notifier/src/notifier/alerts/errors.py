"""Errors of the alerts routes."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, NotFoundError


class AlertNotFoundError(NotFoundError):
    code = ErrorCode.ALERT_NOT_FOUND
    title = "No alert has that id"


class AlertAlreadyResolvedError(ConflictError):
    code = ErrorCode.ALERT_ALREADY_RESOLVED
    title = "A resolved alert cannot be acknowledged"
