from __future__ import annotations

from fastapi import APIRouter

from order_api.clients.wallet_pool import PoolStats
from order_api.context import Ctx
from order_api.dependencies import CurrentOperator
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "/pool",
    operation_id="getPoolStats",
    summary="Deposit-address pool health per currency (from wallet-pool)",
    description="Levels, queue, allocation and release rates and when the free addresses run out, per "
    "currency and network, for every member of staff (operator, support, admin: their own token) and the "
    "admin API key.",
    response_model=PoolStats,
    responses=problem_responses(401, 403, 502, 503),
)
async def get_pool_stats(_staff: CurrentOperator, ctx: Ctx) -> PoolStats:
    return await ctx.wallet_pool.pool_stats()
