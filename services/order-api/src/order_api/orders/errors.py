"""Errors of the orders domain, each with a stable code."""

from __future__ import annotations

from servicekit.errors import ConflictError, DomainError, NotFoundError, ValidationFailedError


class OrderNotFoundError(NotFoundError):
    code = "order_not_found"
    title = "Order not found"


class OrderTransitionError(ConflictError):
    code = "order_transition_not_allowed"
    title = "The order cannot move to that status now"


class OrderVersionMismatchError(DomainError):
    status = 412
    code = "order_version_mismatch"
    title = "The order changed since you read it"


class OpenOrderLimitError(ConflictError):
    code = "open_order_limit_reached"
    title = "Too many open orders"


class OrderInputError(ValidationFailedError):
    code = "order_invalid"
    title = "The order is not valid"


class IdempotencyKeyReusedError(ValidationFailedError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInFlightError(ConflictError):
    code = "idempotency_key_in_flight"
    title = "A request with this Idempotency-Key is still being processed"


class FullSessionRequiredError(DomainError):
    status = 403
    code = "full_session_required"
    title = "This needs a session proven by an emailed code"
