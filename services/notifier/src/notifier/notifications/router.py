"""``/v1/notifications``: the delivery queue for operators (list, redeliver)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from notifier.context import Ctx
from notifier.notifications import service
from notifier.notifications.models import Channel, NotificationStatus
from notifier.notifications.schemas import NotificationPageRead, NotificationRead
from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam

router = APIRouter(prefix="/v1/notifications", tags=["notifications"])

CanRead = Annotated[Caller, Depends(require_scope("notifications:read"))]
CanWrite = Annotated[Caller, Depends(require_scope("notifications:write"))]


@router.get(
    "",
    operation_id="listNotifications",
    response_model=NotificationPageRead,
    summary="List notifications",
    description=(
        "Newest first, filtered by order, channel and status; cursor pagination: pass `next_cursor` back as "
        "`cursor`. Recipients are masked. Scope `notifications:read`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def list_notifications(
    session: DbSession,
    ctx: Ctx,
    _caller: CanRead,
    order_id: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[Channel | None, Query()] = None,
    notification_status: Annotated[NotificationStatus | None, Query(alias="status")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> NotificationPageRead:
    return await service.list_notifications(
        session=session,
        protection=ctx.protection,
        order_id=order_id,
        channel=channel,
        status=notification_status,
        cursor=cursor,
        limit=limit,
    )


@router.post(
    "/{notification_id}/redeliver",
    operation_id="redeliverNotification",
    response_model=NotificationRead,
    summary="Redeliver a failed or dead notification",
    description=(
        "Puts a `failed` or `dead` notification back in the queue, due now, with a fresh attempt budget; "
        "earlier attempts stay recorded. `409` for a pending or sent one. Scope `notifications:write`."
    ),
    responses=problem_responses(401, 403, 404, 409),
)
async def redeliver(
    session: DbSession,
    ctx: Ctx,
    _caller: CanWrite,
    notification_id: Annotated[str, Path(max_length=36, description="The notification's id.")],
) -> NotificationRead:
    return await service.redeliver(
        session=session, protection=ctx.protection, notification_id=notification_id
    )
