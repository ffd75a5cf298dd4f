"""Errors of the allocation routes."""

from __future__ import annotations

from servicekit.errors import ConflictError, NotFoundError


class AllocationNotFoundError(NotFoundError):
    code = "allocation_not_found"
    title = "wallet-pool knows no allocation for this order"


class AllocationClosedError(ConflictError):
    """The order was released: it never gets a (second) address."""

    code = "allocation_closed"
    title = "This order's allocation is closed"


class AllocationMismatchError(ConflictError):
    """The order id is already allocated or queued in another pool."""

    code = "allocation_mismatch"
    title = "This order already asked for another currency or network"
