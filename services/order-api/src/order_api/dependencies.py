"""Annotated dependency aliases for order-api routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from order_api.operators.dependencies import (
    AdminStaff,
    CurrentOperator,
    OrderHandler,
    OrderReader,
    SupportStaff,
)
from servicekit.apikeys import Caller, require_scope

AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]

__all__ = [
    "AdminCaller",
    "AdminStaff",
    "CurrentOperator",
    "OrderHandler",
    "OrderReader",
    "SupportStaff",
]
