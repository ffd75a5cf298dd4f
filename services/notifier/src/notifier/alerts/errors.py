"""Errors of the alerts routes."""

from __future__ import annotations

from servicekit.errors import ConflictError, NotFoundError


class AlertNotFoundError(NotFoundError):
    code = "alert_not_found"
    title = "No alert has that id"


class AlertAlreadyResolvedError(ConflictError):
    code = "alert_already_resolved"
    title = "A resolved alert cannot be acknowledged"
