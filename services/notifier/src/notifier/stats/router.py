"""``GET /v1/stats/delivery``."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from notifier.stats.schemas import DeliveryStatsRead
from notifier.stats.service import delivery_stats
from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.db import utcnow
from servicekit.errors import ValidationFailedError, problem_responses

router = APIRouter(prefix="/v1/stats", tags=["stats"])

DEFAULT_WINDOW = timedelta(hours=24)


@router.get(
    "/delivery",
    operation_id="getDeliveryStats",
    response_model=DeliveryStatsRead,
    summary="Delivery figures per channel and template",
    description=(
        "For the notifications queued in `[since, until)` (default: the last 24 hours): sent, pending, "
        "permanently failed (refused/bounced), dead-lettered, attempts, transiently failed attempts, retries, "
        "failure share, and latency percentiles (queued → accepted, seconds). Scope `notifications:read`."
    ),
    responses=problem_responses(401, 403, 422),
)
async def get_delivery_stats(
    session: DbSession,
    _caller: Annotated[Caller, Depends(require_scope("notifications:read"))],
    since: Annotated[
        AwareDatetime | None,
        Query(description="Start of the window (ISO 8601 with offset); default 24 h before until."),
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="End of the window, exclusive; default now.")
    ] = None,
) -> DeliveryStatsRead:
    until = until or utcnow()
    since = since or until - DEFAULT_WINDOW
    if since >= until:
        raise ValidationFailedError.for_field("since", "must be earlier than until", kind="window_empty")
    return await delivery_stats(session=session, since=since, until=until)
