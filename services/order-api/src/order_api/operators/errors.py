"""Errors of the operator workflow, each with a stable ``code``."""

from __future__ import annotations

from servicekit.errors import ConflictError, DomainError, NotFoundError, ValidationFailedError


class OperatorTokenMissingError(DomainError):
    status = 401
    code = "operator_token_missing"
    title = "Operator token required"


class OperatorTokenInvalidError(DomainError):
    """Unknown, revoked and expired tokens (and unknown API keys) are one error: the answer does not say
    which."""

    status = 401
    code = "operator_token_invalid"
    title = "Operator token not accepted"


class OperatorForbiddenError(DomainError):
    status = 403
    code = "operator_forbidden"
    title = "Your role may not do this"


class ActedForIdentityForbiddenError(DomainError):
    """An identity acted for (the Telegram gateway's key naming an operator) reaches only the operator's
    work on orders; admin and support routes need the member of staff's own credential."""

    status = 403
    code = "acted_for_identity_forbidden"
    title = "Not for an identity acted for by a service"


class TelegramOperatorUnknownError(DomainError):
    status = 403
    code = "telegram_operator_unknown"
    title = "No active operator is linked to this Telegram user"


class TelegramLinkNotFoundError(NotFoundError):
    code = "telegram_link_not_found"
    title = "No active operator is linked to this Telegram user"


class OperatorNotFoundError(NotFoundError):
    code = "operator_not_found"
    title = "Operator not found"


class OperatorInactiveError(ConflictError):
    code = "operator_inactive"
    title = "The operator is deactivated"


class OperatorTelegramIdTakenError(ConflictError):
    code = "operator_telegram_id_taken"
    title = "Another operator is linked to this Telegram user"


class OrderAlreadyTakenError(ConflictError):
    """Carries ``held_by: {operator_id, name}``."""

    code = "order_already_taken"
    title = "Another operator has taken this order"


class OrderNotHeldError(ConflictError):
    """Carries ``held_by: {operator_id, name}`` (null when nobody holds the order)."""

    code = "order_not_held"
    title = "You do not hold this order"


class OrderAlreadyEscalatedError(ConflictError):
    code = "order_already_escalated"
    title = "The order already has an open escalation"


class EscalationNotFoundError(NotFoundError):
    code = "escalation_not_found"
    title = "Escalation not found"


class EscalationNotOpenError(ConflictError):
    code = "escalation_not_open"
    title = "The escalation is already resolved"


class LinkCodeInvalidError(ValidationFailedError):
    """Wrong, expired, used and superseded Telegram link codes are one error: a guesser learns nothing."""

    code = "link_code_invalid"
    title = "The link code is not valid"

    def __init__(self) -> None:
        message = "The link code is wrong, expired or already used. Ask an admin for a new code."
        super().__init__(message, errors=[{"field": "code", "message": message, "type": "link_code_invalid"}])
