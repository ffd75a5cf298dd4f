"""Errors of the orders domain, each with a stable code."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    RateLimitedError,
    ValidationFailedError,
)


class OrderNotFoundError(NotFoundError):
    code = ErrorCode.ORDER_NOT_FOUND
    title = "Order not found"


class OrderTransitionError(ConflictError):
    code = ErrorCode.ORDER_TRANSITION_NOT_ALLOWED
    title = "The order cannot move to that status now"


class OrderVersionMismatchError(DomainError):
    status = 412
    code = ErrorCode.ORDER_VERSION_MISMATCH
    title = "The order changed since you read it"


class OpenOrderLimitError(ConflictError):
    code = ErrorCode.OPEN_ORDER_LIMIT_REACHED
    title = "Too many open orders"


class OrderInputError(ValidationFailedError):
    code = ErrorCode.ORDER_INVALID
    title = "The order is not valid"


class IdempotencyKeyReusedError(ValidationFailedError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    title = "This Idempotency-Key was used with a different request"


class IdempotencyKeyInFlightError(ConflictError):
    code = ErrorCode.IDEMPOTENCY_KEY_IN_FLIGHT
    title = "A request with this Idempotency-Key is still being processed"


class FullSessionRequiredError(DomainError):
    status = 403
    code = ErrorCode.FULL_SESSION_REQUIRED
    title = "This needs a session proven by an emailed code"


class TooManyStreamsError(RateLimitedError):
    title = "Too many open order streams"


STREAM_RETRY_AFTER_SECONDS = 10
"""What a refused order stream's ``Retry-After`` says: long enough for an abandoned stream to be noticed."""


class TransactionRequiredError(ValidationFailedError):
    code = ErrorCode.TRANSACTION_REQUIRED
    title = "Completing an order needs its transaction record"


class TransactionInvalidError(ValidationFailedError):
    code = ErrorCode.TRANSACTION_INVALID
    title = "The transaction record is not valid"


class PaymentMismatchError(ConflictError):
    code = ErrorCode.PAYMENT_MISMATCH
    title = "The deposit differs from the ordered amount"
