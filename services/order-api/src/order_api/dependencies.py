"""Annotated dependency aliases for order-api routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from order_api.clients.wallet_pool import WalletPoolClient
from order_api.operators.dependencies import (
    AdminStaff,
    CurrentOperator,
    OrderHandler,
    OrderReader,
    SupportStaff,
)
from servicekit.apikeys import Caller, require_scope


async def _wallet_pool(request: Request) -> WalletPoolClient:
    client: WalletPoolClient = request.app.state.wallet_pool
    return client


WalletPool = Annotated[WalletPoolClient, Depends(_wallet_pool)]
AdminCaller = Annotated[Caller, Depends(require_scope("admin"))]

__all__ = [
    "AdminCaller",
    "AdminStaff",
    "CurrentOperator",
    "OrderHandler",
    "OrderReader",
    "SupportStaff",
    "WalletPool",
]
