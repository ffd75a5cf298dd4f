"""Errors of the wallet routes."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import NotFoundError, ValidationFailedError


class WalletNotFoundError(NotFoundError):
    code = ErrorCode.WALLET_NOT_FOUND
    title = "No wallet has this id"


class WalletImportInvalidError(ValidationFailedError):
    """Some lines of an import are not importable; ``errors[]`` names each with its line. Nothing was written.

    Keeps the ``validation_failed`` code: to a client it is a validation problem like any other."""

    title = "The import was refused; nothing was imported"
