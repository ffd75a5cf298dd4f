"""The gateway's Telegram errors, and how a failed Bot API call is classified.

For the notifier (contract B): Telegram unreachable, 5xx or 429 is ``503 telegram_unavailable`` (transient:
retry, after ``Retry-After`` when Telegram gave one); Telegram refusing the call otherwise (chat not found,
bot removed from the chat) is ``409 telegram_rejected`` (permanent); no token or no chat is ``409
telegram_disabled`` (permanent).
"""

from __future__ import annotations

from aiogram.exceptions import (
    AiogramError,
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, DomainError

NOT_MODIFIED = "message is not modified"
MESSAGE_GONE = ("message to edit not found", "message can't be edited", "message_id_invalid")


class TelegramDisabledError(ConflictError):
    code = ErrorCode.TELEGRAM_DISABLED
    title = "Telegram is off on this gateway"


class TelegramRejectedError(ConflictError):
    code = ErrorCode.TELEGRAM_REJECTED
    title = "Telegram refused the message"


class TelegramUnavailableError(DomainError):
    """Carries ``retry_after_seconds`` when Telegram said how long to wait (also sent as ``Retry-After``)."""

    status = 503
    code = ErrorCode.TELEGRAM_UNAVAILABLE
    title = "Telegram is unavailable"

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int | None = None) -> None:
        extra = {} if retry_after_seconds is None else {"retry_after_seconds": retry_after_seconds}
        super().__init__(detail, extra=extra)
        self.retry_after_seconds = retry_after_seconds


class WebhookSecretInvalidError(DomainError):
    status = 401
    code = ErrorCode.WEBHOOK_SECRET_INVALID
    title = "The webhook secret token is missing or wrong"


class WebhookNotInUseError(ConflictError):
    code = ErrorCode.WEBHOOK_NOT_IN_USE
    title = "This gateway does not take updates by webhook"


def is_not_modified(error: AiogramError) -> bool:
    """Telegram's 400 for an edit that changes nothing: the card already shows it, which is success."""
    return isinstance(error, TelegramBadRequest) and NOT_MODIFIED in error.message.lower()


def is_message_gone(error: AiogramError) -> bool:
    """The message was deleted (or is too old to edit): the card no longer exists."""
    return isinstance(error, TelegramBadRequest) and any(m in error.message.lower() for m in MESSAGE_GONE)


def is_transient(error: AiogramError) -> bool:
    return isinstance(
        error, TelegramNetworkError | TelegramServerError | TelegramRetryAfter | ClientDecodeError
    )


def classify(error: AiogramError) -> DomainError:
    """The domain error for a failed Bot API call."""
    if isinstance(error, TelegramRetryAfter):
        return TelegramUnavailableError(
            f"Telegram asks to slow down for {error.retry_after} s.", retry_after_seconds=error.retry_after
        )
    if is_transient(error):
        return TelegramUnavailableError(f"Telegram is unreachable or failing: {_describe(error)}")
    return TelegramRejectedError(f"Telegram refused the call: {_describe(error)}")


def _describe(error: AiogramError) -> str:
    text = error.message if isinstance(error, TelegramAPIError) else type(error).__name__
    return text[:300]
