"""Annotated dependency aliases for order-api routers."""

from __future__ import annotations

from order_api.operators.dependencies import (
    AdminStaff,
    CurrentOperator,
    OrderHandler,
    OrderReader,
    SupportStaff,
)

__all__ = [
    "AdminStaff",
    "CurrentOperator",
    "OrderHandler",
    "OrderReader",
    "SupportStaff",
]
