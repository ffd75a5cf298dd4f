from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from wallet_pool.context import Ctx
from wallet_pool.stats import service
from wallet_pool.stats.schemas import PoolStatsRead

router = APIRouter(prefix="/v1/stats", tags=["stats"])


@router.get(
    "",
    operation_id="getPoolStats",
    summary="Pool health per currency",
    description=(
        "Per currency, and per network within it: wallets by status, the wait queue (length, oldest and "
        "average wait), allocations and releases in the last `window_seconds`, and a naive prediction of "
        "when free wallets run out at that net rate. Scope `pool:read`."
    ),
    response_model=PoolStatsRead,
    responses=problem_responses(401, 403),
)
async def get_pool_stats(
    session: DbSession,
    ctx: Ctx,
    _caller: Annotated[Caller, Depends(require_scope("pool:read"))],
) -> PoolStatsRead:
    return await service.pool_stats(session=session, settings=ctx.settings, metrics=ctx.metrics)
