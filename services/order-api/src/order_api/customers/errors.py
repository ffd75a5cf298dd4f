"""Errors of the customers domain, each with a stable ``code``."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, NotFoundError


class CustomerNotFoundError(NotFoundError):
    code = ErrorCode.CUSTOMER_NOT_FOUND
    title = "Customer not found"


class CustomerHasOpenOrdersError(ConflictError):
    """Carries ``open_orders``: the ids of the orders still to finish or cancel."""

    code = ErrorCode.CUSTOMER_HAS_OPEN_ORDERS
    title = "The customer has open orders"
