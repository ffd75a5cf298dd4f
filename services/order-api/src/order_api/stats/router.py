from __future__ import annotations

from fastapi import APIRouter

from order_api.clients.wallet_pool import PoolStats
from order_api.context import Ctx
from order_api.dependencies import AdminCaller
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "/pool",
    operation_id="getPoolStats",
    summary="Deposit-address pool health per currency (from wallet-pool)",
    response_model=PoolStats,
    responses=problem_responses(401, 403, 502, 503),
)
async def get_pool_stats(_caller: AdminCaller, ctx: Ctx) -> PoolStats:
    return await ctx.wallet_pool.pool_stats()
