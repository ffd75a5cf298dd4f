"""``GET /v1/audit``: the audit trail, for admins. Read-only: no route edits or deletes a row."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from order_api.audit import service
from order_api.audit.schemas import AuditFilter, AuditPage
from order_api.operators.dependencies import AdminStaff
from servicekit.app import DbSession
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "",
    operation_id="listAudit",
    summary="Read the audit trail",
    description="Every operator, admin and order action, newest first, filtered by actor, order, action and "
    "time. Each row carries `prev_hash` and `row_hash`; `python -m order_api audit-verify` walks the chain. "
    "Admins only (the admin API key or an operator token with role `admin`).",
    response_model=AuditPage,
    responses=problem_responses(401, 403, 422),
)
async def list_audit(
    session: DbSession, _admin: AdminStaff, query: Annotated[AuditFilter, Query()]
) -> AuditPage:
    return await service.list_audit(session=session, query=query)
