"""Errors of the operator workflow, each with a stable ``code``."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, DomainError, NotFoundError, ValidationFailedError


class OperatorTokenMissingError(DomainError):
    status = 401
    code = ErrorCode.OPERATOR_TOKEN_MISSING
    title = "Operator token required"


class OperatorTokenInvalidError(DomainError):
    """Unknown, revoked and expired tokens (and unknown API keys) are one error: the answer does not say
    which."""

    status = 401
    code = ErrorCode.OPERATOR_TOKEN_INVALID
    title = "Operator token not accepted"


class OperatorForbiddenError(DomainError):
    status = 403
    code = ErrorCode.OPERATOR_FORBIDDEN
    title = "Your role may not do this"


class ActedForIdentityForbiddenError(DomainError):
    """An identity acted for (the Telegram gateway's key naming an operator) reaches only the operator's
    work on orders; admin and support routes need the member of staff's own credential."""

    status = 403
    code = ErrorCode.ACTED_FOR_IDENTITY_FORBIDDEN
    title = "Not for an identity acted for by a service"


class TelegramOperatorUnknownError(DomainError):
    status = 403
    code = ErrorCode.TELEGRAM_OPERATOR_UNKNOWN
    title = "No active operator is linked to this Telegram user"


class TelegramLinkNotFoundError(NotFoundError):
    code = ErrorCode.TELEGRAM_LINK_NOT_FOUND
    title = "No active operator is linked to this Telegram user"


class OperatorNotFoundError(NotFoundError):
    code = ErrorCode.OPERATOR_NOT_FOUND
    title = "Operator not found"


class OperatorInactiveError(ConflictError):
    code = ErrorCode.OPERATOR_INACTIVE
    title = "The operator is deactivated"


class OperatorTelegramIdTakenError(ConflictError):
    code = ErrorCode.OPERATOR_TELEGRAM_ID_TAKEN
    title = "Another operator is linked to this Telegram user"


class OrderAlreadyTakenError(ConflictError):
    """Carries ``held_by: {operator_id, name}``."""

    code = ErrorCode.ORDER_ALREADY_TAKEN
    title = "Another operator has taken this order"


class OperatorAtCapacityError(ConflictError):
    """Carries ``held_orders`` and ``max_held_orders`` (the operator's cap)."""

    code = ErrorCode.OPERATOR_AT_CAPACITY
    title = "The operator holds as many orders as allowed"


class OrderNotHeldError(ConflictError):
    """Carries ``held_by: {operator_id, name}`` (null when nobody holds the order)."""

    code = ErrorCode.ORDER_NOT_HELD
    title = "You do not hold this order"


class OrderAlreadyEscalatedError(ConflictError):
    code = ErrorCode.ORDER_ALREADY_ESCALATED
    title = "The order already has an open escalation"


class EscalationNotFoundError(NotFoundError):
    code = ErrorCode.ESCALATION_NOT_FOUND
    title = "Escalation not found"


class EscalationNotOpenError(ConflictError):
    code = ErrorCode.ESCALATION_NOT_OPEN
    title = "The escalation is already resolved"


class LinkCodeInvalidError(ValidationFailedError):
    """Wrong, expired, used and superseded Telegram link codes are one error: a guesser learns nothing."""

    code = ErrorCode.LINK_CODE_INVALID
    title = "The link code is not valid"

    def __init__(self) -> None:
        message = "The link code is wrong, expired or already used. Ask an admin for a new code."
        super().__init__(message, errors=[{"field": "code", "message": message, "type": "link_code_invalid"}])
