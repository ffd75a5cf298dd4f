"""``/health/live`` (the process answers) and ``/health/ready`` (its dependencies answer).

Readiness runs every registered check with a timeout. Checks marked ``critical=False`` (peer services) are
reported but do not make the service unready: a peer being down delays work, it must not take this service
out of rotation too. Where metrics need a key (``metrics_access``), only a caller with that key reads which
checks ran and how they went; anyone else (a Kubernetes probe) gets the status alone, with the same HTTP
status. It also reports the database's schema revision against the code's head
(``servicekit.revisions``): a database behind the code makes the service unready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.utils import suppress_instrumentation
from pydantic import BaseModel, Field

from servicekit.apikeys import BearerCredentials, caller_with_scope
from servicekit.errors import DomainError
from servicekit.metrics import METRICS_SCOPE
from servicekit.openapi import ANONYMOUS_ALLOWED
from servicekit.revisions import SchemaRevision

Check = Callable[[], Awaitable[str | None]]
SchemaCheck = Callable[[], Awaitable[SchemaRevision | None]]


async def _no_schema() -> None:
    return None


@dataclass(slots=True)
class ReadinessCheck:
    name: str
    check: Check
    critical: bool = True


class CheckResult(BaseModel):
    status: Literal["ok", "failing"]
    critical: bool
    latency_ms: float
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    service: str
    checks: dict[str, CheckResult]
    schema_revision: SchemaRevision | None = Field(
        default=None, alias="schema", description="The database's schema revision against the code's head."
    )


async def _run(check: ReadinessCheck, limit_seconds: float) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check.check(), limit_seconds)
        status: Literal["ok", "failing"] = "ok"
    except Exception as exc:
        status, detail = "failing", f"{type(exc).__name__}: {exc}"[:300]
    latency = round((time.perf_counter() - started) * 1000, 1)
    return CheckResult(status=status, critical=check.critical, latency_ms=latency, detail=detail)


def _may_read_details(request: Request, credentials: BearerCredentials) -> bool:
    try:
        caller_with_scope(request, credentials, METRICS_SCOPE)
    except DomainError:
        return False
    return True


def health_router(
    service: str,
    timeout_seconds: float = 2.0,
    *,
    checks: list[ReadinessCheck],
    schema_revision: SchemaCheck | None = None,
    details_need_key: bool = False,
) -> APIRouter:
    """``checks``: what ``/health/ready`` runs (the list, with what is added to it later);
    ``schema_revision``: the database's schema against the code's; ``details_need_key``: readiness details
    only for a caller with :data:`METRICS_SCOPE`."""
    router = APIRouter(prefix="/health", tags=["operations"])

    @router.get("/live", operation_id="checkLiveness", summary="The process is up")
    async def live() -> dict[str, Any]:
        return {"status": "live", "service": service}

    @router.get(
        "/ready",
        operation_id="checkReadiness",
        openapi_extra=ANONYMOUS_ALLOWED,
        summary="The service and what it depends on are reachable",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A critical dependency is failing"}},
    )
    async def ready(request: Request, credentials: BearerCredentials) -> JSONResponse:
        """Where metrics need a key, a caller without a `metrics:read` key gets `{"status": ...}` alone."""
        # Health paths are never traced; without this each probe's SQL/Redis/HTTP calls would still export
        # a root span of their own (an orphan trace every few seconds per replica).
        with suppress_instrumentation():
            results, schema = await asyncio.gather(
                asyncio.gather(*(_run(c, timeout_seconds) for c in checks)),
                schema_revision() if schema_revision is not None else _no_schema(),
            )
        by_name = {c.name: r for c, r in zip(checks, results, strict=True)}
        healthy = all(r.status == "ok" for r in results if r.critical) and (
            schema is None or schema.status in ("ok", "ahead")
        )
        body = Readiness.model_validate(
            {
                "status": "ready" if healthy else "not_ready",
                "service": service,
                "checks": by_name,
                "schema": schema,
            }
        )
        status_code = 200 if healthy else 503
        if details_need_key and not _may_read_details(request, credentials):
            return JSONResponse({"status": body.status}, status_code=status_code)
        return JSONResponse(body.model_dump(by_alias=True), status_code=status_code)

    return router
