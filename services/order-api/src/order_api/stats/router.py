"""Statistics for admins and operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel

from order_api.clients.wallet_pool import PoolStats, QueueStats, QueueStatsQuery
from order_api.context import Ctx
from order_api.dependencies import CurrentOperator
from order_api.stats import service
from order_api.stats.schemas import OrderStatsQuery, OrderStatsRead
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.export import CSV_MEDIA_TYPE, CSV_RESPONSE, csv_or_model, wants_csv

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


@router.get(
    "/orders",
    operation_id="getOrderStats",
    summary="Order statistics for a window: conversion, step times, breakdowns",
    description="The orders created in `[since, until)` (default: the last 7 days; at most "
    "`ORDER_API_STATS_MAX_WINDOW_DAYS`) with their outcome as of now: counts by status; conversion (completed, "
    "cancelled by the customer, by staff or by the desk, expired unpaid, still open); time to address, to "
    "take, handling time and time to complete as p50/p90/p99 in seconds; breakdowns by currency and network, "
    "amount band (`ORDER_API_STATS_AMOUNT_BANDS`), hour of day and day of week in `tz`, and counts per "
    "`bucket` (hour or day in `tz`). Support, admins and the admin API key see the whole desk; an operator "
    "sees the orders they took at least once or hold now (handed over by a reassignment). With `Accept: "
    "text/csv` the same figures come as one long table `section,key,metric,value`.",
    response_model=OrderStatsRead,
    responses={**CSV_RESPONSE, **problem_responses(401, 403, 422)},
)
async def get_order_stats(
    staff: CurrentOperator,
    ctx: Ctx,
    session: DbSession,
    query: Annotated[OrderStatsQuery, Query()],
    accept: Annotated[str | None, Header(description="`text/csv` for CSV.")] = None,
) -> OrderStatsRead | Response:
    stats = await service.order_stats(session=session, settings=ctx.settings, principal=staff, query=query)
    if wants_csv(accept):
        # one long table (section,key,metric,value): its rows are keyed by several fields (currency and network,
        # currency and band), which servicekit.export's one-path-per-figure form would name ambiguously
        return Response(
            service.order_stats_csv(stats),
            media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="order-stats.csv"'},
        )
    return stats
