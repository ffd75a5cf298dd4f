from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from order_api.clients.wallet_pool import PoolStats, QueueStats, QueueStatsQuery
from order_api.context import Ctx
from order_api.dependencies import CurrentOperator
from servicekit.errors import problem_responses
from servicekit.export import CSV_RESPONSE, csv_or_model

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


@router.get(
    "/queue",
    operation_id="getQueueStats",
    summary="Queue analytics per currency (from wallet-pool)",
    description="For the window `[since, until)` (default the last 24 hours, or the last `days` days; at most "
    "31): wait percentiles and histogram, the abandonment rate, arrivals and hand-overs per hour, peak hours in "
    "`tz`, and the wallets that keep the p90 wait under the target (Erlang C), per currency and network. Every "
    "member of staff and the admin API key; `Accept: text/csv` for CSV.",
    response_model=QueueStats,
    responses={**CSV_RESPONSE, **problem_responses(401, 403, 422, 502, 503)},
)
async def get_queue_stats(
    _staff: CurrentOperator,
    ctx: Ctx,
    query: Annotated[QueueStatsQuery, Query()],
    accept: Annotated[str | None, Header(description="`text/csv` for CSV.")] = None,
) -> BaseModel | Response:
    figures = await ctx.wallet_pool.queue_stats(query.checked())
    return csv_or_model(figures, accept=accept, filename="queue-stats.csv")
