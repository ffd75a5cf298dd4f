"""Errors of the customers domain, each with a stable ``code``."""

from __future__ import annotations

from servicekit.errors import ConflictError, NotFoundError


class CustomerNotFoundError(NotFoundError):
    code = "customer_not_found"
    title = "Customer not found"


class CustomerHasOpenOrdersError(ConflictError):
    """Carries ``open_orders``: the ids of the orders still to finish or cancel."""

    code = "customer_has_open_orders"
    title = "The customer has open orders"
