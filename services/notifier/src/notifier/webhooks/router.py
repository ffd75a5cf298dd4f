"""``/v1/admin/webhook-endpoints``: the website's webhook endpoints, their delivery log, redelivery and test
events (scope ``webhooks:admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from notifier.context import Ctx
from notifier.webhooks import schemas, service
from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam

router = APIRouter(prefix="/v1/admin/webhook-endpoints", tags=["webhooks"])

Admin = Annotated[Caller, Depends(require_scope("webhooks:admin"))]
EndpointId = Annotated[str, Path(max_length=36, description="The endpoint's id.")]
DeliveryId = Annotated[str, Path(max_length=36, description="The delivery's id (its `webhook-id`).")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.WebhookEndpointWithSecret,
    operation_id="createWebhookEndpoint",
    summary="Register a webhook endpoint",
    description=(
        "The URL must be https on a public address (`422` naming `url` otherwise). The answer carries the "
        "signing secret, shown this once."
    ),
    responses=problem_responses(401, 403, 422),
)
async def create_endpoint(
    session: DbSession, ctx: Ctx, _caller: Admin, body: schemas.WebhookEndpointCreate
) -> schemas.WebhookEndpointWithSecret:
    return await service.create_endpoint(
        session=session, protection=ctx.protection, settings=ctx.settings, body=body
    )


@router.get(
    "",
    response_model=schemas.WebhookEndpointPage,
    operation_id="listWebhookEndpoints",
    summary="List webhook endpoints",
    responses=problem_responses(401, 403, 422),
)
async def list_endpoints(
    session: DbSession, _caller: Admin, cursor: CursorParam = None, limit: LimitParam = DEFAULT_PAGE_SIZE
) -> schemas.WebhookEndpointPage:
    return await service.list_endpoints(session=session, cursor=cursor, limit=limit)


@router.get(
    "/{endpoint_id}",
    response_model=schemas.WebhookEndpointRead,
    operation_id="getWebhookEndpoint",
    summary="Read a webhook endpoint (never its secret)",
    responses=problem_responses(401, 403, 404),
)
async def get_endpoint(
    session: DbSession, _caller: Admin, endpoint_id: EndpointId
) -> schemas.WebhookEndpointRead:
    return service.to_read(await service.endpoint_of(session, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=schemas.WebhookEndpointRead,
    operation_id="updateWebhookEndpoint",
    summary="Change a webhook endpoint's URL, event types, description, or enable/disable it",
    responses=problem_responses(401, 403, 404, 422),
)
async def update_endpoint(
    session: DbSession, ctx: Ctx, _caller: Admin, endpoint_id: EndpointId, body: schemas.WebhookEndpointUpdate
) -> schemas.WebhookEndpointRead:
    return await service.update_endpoint(
        session=session, settings=ctx.settings, endpoint_id=endpoint_id, body=body
    )


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="deleteWebhookEndpoint",
    summary="Delete a webhook endpoint",
    description="Its deliveries still pending fail at their next attempt.",
    responses=problem_responses(401, 403, 404),
)
async def delete_endpoint(session: DbSession, _caller: Admin, endpoint_id: EndpointId) -> None:
    await service.delete_endpoint(session=session, endpoint_id=endpoint_id)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=schemas.WebhookEndpointWithSecret,
    operation_id="rotateWebhookSecret",
    summary="Issue a new signing secret",
    description=(
        "The answer carries the new secret, shown this once. The old one keeps signing deliveries beside it "
        "(two signatures in `webhook-signature`) until `previous_secret_expires_at` "
        "(`NOTIFIER_WEBHOOK_SECRET_OVERLAP_HOURS`)."
    ),
    responses=problem_responses(401, 403, 404),
)
async def rotate_secret(
    session: DbSession, ctx: Ctx, _caller: Admin, endpoint_id: EndpointId
) -> schemas.WebhookEndpointWithSecret:
    return await service.rotate_secret(
        session=session, protection=ctx.protection, settings=ctx.settings, endpoint_id=endpoint_id
    )


@router.post(
    "/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.WebhookDeliveryRead,
    operation_id="sendWebhookTest",
    summary="Send a test event",
    description="Queues a `webhook.test` delivery to the endpoint (even a disabled one); follow it in the log.",
    responses=problem_responses(401, 403, 404),
)
async def send_test(
    session: DbSession, ctx: Ctx, _caller: Admin, endpoint_id: EndpointId
) -> schemas.WebhookDeliveryRead:
    return await service.send_test(session=session, protection=ctx.protection, endpoint_id=endpoint_id)


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=schemas.WebhookDeliveryPage,
    operation_id="listWebhookDeliveries",
    summary="An endpoint's delivery log",
    description="Newest first: status, attempts, the last answer's HTTP status and latency, the last error.",
    responses=problem_responses(401, 403, 404, 422),
)
async def list_deliveries(
    session: DbSession,
    ctx: Ctx,
    _caller: Admin,
    endpoint_id: EndpointId,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> schemas.WebhookDeliveryPage:
    return await service.list_deliveries(
        session=session, protection=ctx.protection, endpoint_id=endpoint_id, cursor=cursor, limit=limit
    )


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=schemas.WebhookDeliveryRead,
    operation_id="redeliverWebhook",
    summary="Send a delivery again",
    description=(
        "A sent, failed or dead delivery goes again, with the same `webhook-id` and a fresh attempt budget. "
        "`409` while it is pending."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def redeliver(
    session: DbSession, ctx: Ctx, _caller: Admin, endpoint_id: EndpointId, delivery_id: DeliveryId
) -> schemas.WebhookDeliveryRead:
    return await service.redeliver(
        session=session, protection=ctx.protection, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
