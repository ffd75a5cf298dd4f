"""Errors of the allocation routes."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, NotFoundError


class AllocationNotFoundError(NotFoundError):
    code = ErrorCode.ALLOCATION_NOT_FOUND
    title = "wallet-pool knows no allocation for this order"


class AllocationClosedError(ConflictError):
    """The order was released: it never gets a (second) address."""

    code = ErrorCode.ALLOCATION_CLOSED
    title = "This order's allocation is closed"


class AllocationMismatchError(ConflictError):
    """The order id is already allocated or queued in another pool."""

    code = ErrorCode.ALLOCATION_MISMATCH
    title = "This order already asked for another currency or network"
