"""Errors of customer authentication, each with a stable ``code``."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import DomainError, ValidationFailedError


class SessionMissingError(DomainError):
    status = 401
    code = ErrorCode.SESSION_MISSING
    title = "Customer session required"


class SessionInvalidError(DomainError):
    """Unknown, revoked and expired tokens are one error: the answer does not say which."""

    status = 401
    code = ErrorCode.SESSION_INVALID
    title = "Customer session not accepted"


class EmailCodeInvalidError(ValidationFailedError):
    """Wrong, expired, spent and unknown codes are one error, so a guesser learns nothing from it."""

    code = ErrorCode.EMAIL_CODE_INVALID
    title = "The code is not valid"

    def __init__(self, detail: str | None = None) -> None:
        message = "The code is wrong, expired or already used. Request a new code if needed."
        super().__init__(
            detail or message, errors=[{"field": "code", "message": message, "type": "email_code_invalid"}]
        )
