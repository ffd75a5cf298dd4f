"""``/v1/allocations``: a deposit address per order, the wait queue, release."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response, status

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.openapi import INTERNAL
from wallet_pool.allocations import service
from wallet_pool.allocations.models import Priority
from wallet_pool.allocations.schemas import (
    ORDER_ID_PATTERN,
    AllocationAnswer,
    AllocationCreate,
    AllocationQueuedRead,
    AllocationRead,
    AllocationReleaseRead,
)
from wallet_pool.context import Ctx, context_of

router = APIRouter(prefix="/v1/allocations", tags=["allocations"])

CanRead = Annotated[Caller, Depends(require_scope("allocations:read"))]
CanWrite = Annotated[Caller, Depends(require_scope("allocations:write"))]
OrderId = Annotated[str, Path(pattern=ORDER_ID_PATTERN, description="order-api's order id.")]

_QUEUED: dict[int | str, dict[str, Any]] = {
    202: {"model": AllocationQueuedRead, "description": "No address is free: the order waits in the queue."}
}


@router.post(
    "",
    operation_id="allocateWallet",
    openapi_extra=INTERNAL,
    status_code=status.HTTP_201_CREATED,
    response_model=AllocationAnswer,
    summary="Give an order a deposit address, or queue it",
    description=(
        "FIFO over the pool's free wallets: the one free the longest goes first (never-used first), after its "
        "reuse cool-down. `201` with the address, or `202` when none is free: the order waits in the pool's "
        "queue (`priority DESC`, then arrival) with its `position` and `estimated_wait_seconds` (null when "
        "unknown); when a wallet comes back it goes to the head of the queue and order-api is told with a "
        "`wallet.assigned` event. **Idempotent per `order_id`**: asking again answers the current state with "
        "the same status code and never a second address; a released order is `409 allocation_closed`, the "
        "same order in another pool `409 allocation_mismatch`. Scope `allocations:write`."
    ),
    responses={**_QUEUED, **problem_responses(401, 403, 409, 422)},
)
async def allocate_wallet(
    body: AllocationCreate, request: Request, session: DbSession, _caller: CanWrite
) -> Response:
    # The pool's busiest call, kept lean: its context read straight from the app rather than as a dependency
    # (each costs FastAPI about ten microseconds to solve), and the answer serialised once rather than
    # validated again against ``response_model`` first.
    ctx = context_of(request.app)
    answer = await service.allocate_wallet(
        session=session,
        settings=ctx.settings,
        order_id=body.order_id,
        currency=body.currency,
        network=body.network,
        priority=Priority.from_label(body.priority),
        metrics=ctx.metrics,
    )
    queued = isinstance(answer, AllocationQueuedRead)
    return Response(
        answer.model_dump_json(),
        status_code=status.HTTP_202_ACCEPTED if queued else status.HTTP_201_CREATED,
        media_type="application/json",
    )


@router.get(
    "/{order_id}",
    operation_id="getAllocation",
    openapi_extra=INTERNAL,
    response_model=AllocationRead,
    summary="An order's allocation",
    description=(
        "Always `200`, whatever the state; `status` tells which shape: `allocated` (address), `queued` "
        "(current position and estimated wait) or `released`. `404 allocation_not_found` for an order "
        "wallet-pool never saw. Scope `allocations:read`."
    ),
    responses=problem_responses(401, 403, 404),
)
async def get_allocation(order_id: OrderId, session: DbSession, ctx: Ctx, _caller: CanRead) -> AllocationRead:
    return await service.allocation_of(session=session, settings=ctx.settings, order_id=order_id)


@router.post(
    "/{order_id}/release",
    operation_id="releaseAllocation",
    openapi_extra=INTERNAL,
    response_model=AllocationReleaseRead,
    summary="Release an order's address (or its place in the queue)",
    description=(
        "The wallet goes back to the pool and, in the same transaction, to the head of the pool's queue "
        "(`handed_to_order_id`; order-api gets `wallet.assigned`), unless an operator disabled it meanwhile or "
        "its currency has a reuse cool-down: then it rests and the queue sweeper hands it over when the "
        "cool-down has passed. A queued order just leaves the queue. Idempotent: releasing again answers the "
        "same; an order id never seen answers `200` too and is remembered, so a late allocation for it is "
        "refused. Scope `allocations:write`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def release_allocation(
    order_id: OrderId, session: DbSession, ctx: Ctx, _caller: CanWrite
) -> AllocationReleaseRead:
    return await service.release_allocation(
        session=session, settings=ctx.settings, order_id=order_id, metrics=ctx.metrics
    )
