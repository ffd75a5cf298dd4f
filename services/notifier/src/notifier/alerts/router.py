"""``/v1/alerts``: what is alerted on now and before, and acknowledging."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from notifier.alerts import service
from notifier.alerts.models import AlertStatus, Severity
from notifier.alerts.schemas import AlertFilter, AlertPageRead, AlertRead
from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

CanRead = Annotated[Caller, Depends(require_scope("notifications:read"))]
CanWrite = Annotated[Caller, Depends(require_scope("alerts:write"))]


@router.get(
    "",
    operation_id="listAlerts",
    response_model=AlertPageRead,
    summary="List alerts",
    description=(
        "Newest first (by when first raised), filtered by status, severity and key; cursor pagination: pass "
        "`next_cursor` back as `cursor`. Scope `notifications:read`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def list_alerts(
    session: DbSession,
    _caller: CanRead,
    alert_status: Annotated[AlertStatus | None, Query(alias="status")] = None,
    severity: Annotated[Severity | None, Query()] = None,
    key: Annotated[str | None, Query(max_length=200, examples=["pool.low:BTC:bitcoin"])] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> AlertPageRead:
    return await service.list_alerts(
        session=session,
        filters=AlertFilter(status=alert_status, severity=severity, key=key),
        cursor=cursor,
        limit=limit,
    )


@router.post(
    "/{alert_id}/acknowledge",
    operation_id="acknowledgeAlert",
    response_model=AlertRead,
    summary="Acknowledge an alert",
    description=(
        "Someone is on it: an acknowledged alert is no longer escalated by time (a worsening condition still "
        "escalates it). Acknowledging again keeps the first acknowledgement; a resolved alert is `409`. "
        "Scope `alerts:write`."
    ),
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def acknowledge(
    session: DbSession,
    caller: CanWrite,
    alert_id: Annotated[str, Path(max_length=36, description="The alert's id.")],
) -> AlertRead:
    return await service.acknowledge_alert(session=session, alert_id=alert_id, by=caller.name)
