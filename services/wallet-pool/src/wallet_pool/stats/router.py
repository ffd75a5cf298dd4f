from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import AwareDatetime, BaseModel

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.export import CSV_RESPONSE, csv_or_model
from wallet_pool.context import Ctx
from wallet_pool.stats import queue, service
from wallet_pool.stats.schemas import PoolStatsRead, QueueStatsRead

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


@router.get(
    "/queue",
    operation_id="getQueueStats",
    summary="Queue analytics per currency",
    description=(
        "Per currency, and per network within it, for the window `[since, until)` (default the last 24 hours, "
        "or the last `days` days; at most 31 days): the wait for an address of the orders handed one from the "
        "queue (p50/p90/p99, nearest rank, and a histogram with fixed buckets), the abandonment rate (orders "
        "that entered the queue and were released, cancelled or expired, before an address), arrivals and "
        "hand-overs per hour, the peak hour of the day in `tz` over the last `peak_days` days, and a capacity "
        "plan: the fewest wallets that keep the p90 wait under `target_p90_wait_seconds` at the window's "
        "arrival rate and holding time (Erlang C, M/M/c). `Accept: text/csv` answers the same figures as CSV "
        "(`figure,value`). Scope `pool:read`."
    ),
    response_model=QueueStatsRead,
    responses={**CSV_RESPONSE, **problem_responses(401, 403, 422)},
)
async def get_queue_stats(
    session: DbSession,
    ctx: Ctx,
    _caller: Annotated[Caller, Depends(require_scope("pool:read"))],
    since: Annotated[
        AwareDatetime | None, Query(description="Start of the window (ISO 8601 with offset).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="End of the window, exclusive; default now.")
    ] = None,
    days: Annotated[
        int | None, Query(ge=1, le=31, description="The last this many days, instead of `since`.")
    ] = None,
    peak_days: Annotated[int, Query(ge=1, le=90, description="Days the peak hours are counted over.")] = 7,
    tz: Annotated[
        str, Query(max_length=64, description="IANA time zone of the peak hours.", examples=["Europe/Berlin"])
    ] = "UTC",
    target_p90_wait_seconds: Annotated[
        int | None,
        Query(ge=1, le=86400, description="The p90 wait to plan for; default the service's setting."),
    ] = None,
    accept: Annotated[str | None, Header(description="`text/csv` for CSV.")] = None,
) -> BaseModel | Response:
    window = queue.queue_window(
        settings=ctx.settings,
        since=since,
        until=until,
        days=days,
        peak_days=peak_days,
        tz=tz,
        target_p90_wait_seconds=target_p90_wait_seconds,
    )
    figures = await queue.queue_stats(session=session, settings=ctx.settings, window=window)
    return csv_or_model(figures, accept=accept, filename="queue-stats.csv")
