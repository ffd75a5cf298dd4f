"""Customer-facing order routes. Thin: parse, call one service function, shape the response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse
from starlette.background import BackgroundTask

from order_api.auth.dependencies import ClientIp, CurrentCustomer, OptionalCustomer
from order_api.context import Ctx, context_of
from order_api.orders import service, stream
from order_api.orders.models import OrderStatus
from order_api.orders.schemas import OrderCreate, OrderCreated, OrderPage, OrderRead, OrderVersionTag
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.openapi import ANONYMOUS_ALLOWED
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam
from servicekit.ratelimit import client_key

router = APIRouter(prefix="/v1/orders", tags=["orders"])

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Retry-safe creation: the same key and body get the same response; another body is 422; "
        "a request still running is 409 with Retry-After. A retry of a request that died after writing its "
        "order gets that order (201, with a new session token), whenever it comes.",
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=64,
        description="The `id` of the last event received; sent by a reconnecting client. The order is sent "
        "again only if it changed since.",
    ),
]
IfMatch = Annotated[
    OrderVersionTag | None,
    Header(
        alias="If-Match",
        description='The order `version` you read, as an entity tag (`"3"`) or bare (`3`); a stale one is 412.',
    ),
]


@router.post(
    "",
    operation_id="createOrder",
    openapi_extra=ANONYMOUS_ALLOWED,
    status_code=201,
    summary="Create an order",
    description="Validates the order, attaches it to the customer of `email` (created on first order) and "
    "asks the wallet pool for a deposit address. Answers `awaiting_deposit` with `deposit_address`, or "
    "`queued` with `queue_position` when every address of the currency is busy (you will get an email when "
    "one is free), or, when the wallet pool gives no answer within the intake budget, `awaiting_address` "
    "with neither (the order is accepted; the address follows by email). Without a signed-in session the "
    "response carries a `session_token` for this order.",
    response_model=OrderCreated,
    responses=problem_responses(401, 409, 422, 429, retry_after=(409,)),
)
async def create_order(
    request: Request,
    body: OrderCreate,
    session: DbSession,
    principal: OptionalCustomer,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JSONResponse:
    # The busiest call of the desk reads its context straight from the app (and the client's network with
    # it) rather than through the ``Ctx`` and ``ClientIp`` dependencies: each costs FastAPI some ten
    # microseconds to solve.
    ctx = context_of(request.app)
    response = await service.create_order(
        session=session,
        settings=ctx.settings,
        protection=ctx.protection,
        rate_limiter=ctx.rate_limiter,
        wallet_pool=ctx.wallet_pool,
        request=body,
        principal=principal,
        client_ip=client_key(request, trusted_proxies=ctx.trusted_proxies, settings=ctx.settings),
        idempotency_key=idempotency_key,
    )
    if not response.replayed:
        ctx.metrics.order_created(response.body["status"])
    return JSONResponse(response.body, status_code=response.status_code)


@router.get(
    "",
    operation_id="listOrders",
    summary="List my orders",
    description="Newest first, cursor-paginated. Needs a full session (from the emailed one-time code).",
    response_model=OrderPage,
    responses=problem_responses(401, 403, 422),
)
async def list_orders(
    session: DbSession,
    ctx: Ctx,
    principal: CurrentCustomer,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
    status: OrderStatus | None = None,
) -> OrderPage:
    return await service.list_orders(
        session=session,
        protection=ctx.protection,
        principal=principal,
        cursor=cursor,
        limit=limit,
        status=status,
    )


@router.get(
    "/{order_id}",
    operation_id="getOrder",
    summary="Read an order",
    description="Only its customer may read it; another customer's order is `404`.",
    response_model=OrderRead,
    responses=problem_responses(401, 404),
)
async def get_order(
    order_id: str,
    session: DbSession,
    ctx: Ctx,
    principal: CurrentCustomer,
) -> OrderRead:
    return await service.get_order(
        session=session,
        protection=ctx.protection,
        wallet_pool=ctx.wallet_pool,
        principal=principal,
        order_id=order_id,
    )


@router.post(
    "/{order_id}/cancel",
    operation_id="cancelOrder",
    summary="Cancel an order",
    description="Possible while the order is `awaiting_address`, `queued` or `awaiting_deposit`; its deposit "
    "address returns to the pool.",
    response_model=OrderRead,
    responses=problem_responses(401, 404, 409, 412),
)
async def cancel_order(
    order_id: str,
    session: DbSession,
    ctx: Ctx,
    principal: CurrentCustomer,
    if_match: IfMatch = None,
) -> OrderRead:
    return await service.cancel_order(
        session=session,
        protection=ctx.protection,
        principal=principal,
        order_id=order_id,
        expected_version=if_match,
        metrics=ctx.metrics,
    )


EVENT_STREAM_DESCRIPTION = "\n".join(
    [
        "Server-Sent Events: the order as `GET /v1/orders/{id}` shows it at once, then again on every change. "
        "Each event's `data` is that order (JSON) and its `event` says what changed:",
        "",
        *(f"- `{kind}`: {meaning}" for kind, meaning in stream.EVENT_TYPES.items()),
        "",
        "Each event has an `id`; reconnect with it as `Last-Event-ID` and the order is sent again only if it "
        "changed since (a closed order you already have answers `204`: stop). A comment line (`: heartbeat`) "
        "comes when nothing else did for `ORDER_API_STREAM_HEARTBEAT_SECONDS`; the stream closes after "
        "`ORDER_API_STREAM_MAX_SECONDS` (reconnect) and after a closed order's last event. The session token "
        "goes in the `Authorization` header, as for every route: use a fetch-based SSE client, since the "
        "browser's `EventSource` cannot send it. Open streams are bounded per session and per client address "
        "(`429` with `Retry-After`).",
    ]
)


@router.get(
    "/{order_id}/events",
    operation_id="streamOrderEvents",
    summary="Follow an order live",
    description=EVENT_STREAM_DESCRIPTION,
    # Not FastAPI's SSE generator route: the order is read and the stream's place taken before the answer
    # starts, so a refusal is a problem document (401, 404, 429) and a closed order already seen is 204.
    response_class=Response,
    responses={
        200: {
            "description": "The order's events, as they happen.",
            "content": {
                "text/event-stream": {
                    "itemSchema": {
                        "type": "object",
                        "description": "One event. Comment lines (`: heartbeat`) and the first block, "
                        "`retry:` alone, carry no event.",
                        "required": ["event", "data", "id"],
                        "properties": {
                            "event": {"type": "string", "enum": list(stream.EVENT_TYPES)},
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": {"$ref": "#/components/schemas/OrderRead"},
                            },
                            "id": {
                                "type": "string",
                                "description": "The state the event shows: `<version>` or, while queued, "
                                "`<version>.<queue place>`; send it back as `Last-Event-ID`.",
                            },
                            "retry": {"type": "integer", "minimum": 0},
                        },
                    },
                    "example": 'retry: 3000\n\nevent: order\ndata: {"id": "5b0c…", "status": "queued", '
                    '"queue_position": 2, "version": 2, …}\nid: 2.2\n\n: heartbeat\n\n',
                }
            },
        },
        204: {"description": "The order is closed and `Last-Event-ID` shows you have its last state."},
        **problem_responses(401, 404, 422, 429),
    },
)
async def stream_order_events(
    order_id: str,
    session: DbSession,
    ctx: Ctx,
    principal: CurrentCustomer,
    client_ip: ClientIp,
    last_event_id: LastEventId = None,
) -> Response:
    opened = await stream.open_order_stream(
        session=session,
        database=ctx.runtime.database,
        protection=ctx.protection,
        wallet_pool=ctx.wallet_pool,
        settings=ctx.settings,
        streams=ctx.order_streams,
        principal=principal,
        client=client_ip,
        order_id=order_id,
        last_event_id=last_event_id,
    )
    if opened is None:
        return Response(status_code=204)
    return EventSourceResponse(
        opened.events(), headers=stream.STREAM_HEADERS, background=BackgroundTask(opened.close)
    )
