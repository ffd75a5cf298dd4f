"""``Annotated`` dependency aliases of wallet-pool's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings


async def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def pool_metrics(request: Request) -> PoolMetrics:
    metrics: PoolMetrics = request.app.state.pool_metrics
    return metrics


AppSettings = Annotated[Settings, Depends(app_settings)]
Metrics = Annotated[PoolMetrics, Depends(pool_metrics)]
