"""Prometheus metrics: request rate, latency and errors per route, plus each service's business metrics.

Every app has its own registry (``app.state.metrics_registry``), so several apps can live in one process
(as in tests) and a service adds its gauges and counters to the same ``/metrics`` page.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from servicekit.apikeys import BearerCredentials, caller_with_scope

log = logging.getLogger("servicekit.access")
METRICS_SCOPE = "metrics:read"
"""The scope that reads ``/metrics`` and the details of ``/health/ready`` where they need a key."""
QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


class RequestMetrics:
    """Counts and times every HTTP request by method, route template and status, and writes one access log
    line per request. Called by ``servicekit.telemetry.RequestTelemetryMiddleware`` inside the request's span
    (so the line carries the correlation id): one middleware does all the per-request bookkeeping."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total", "HTTP requests handled", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def record(self, *, method: str, path: str, route: str, status: int, elapsed: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(elapsed)
        if path not in QUIET_PATHS:
            log.info(
                "%s %s %s",
                method,
                path,
                status,
                extra={"route": route, "status": status, "duration_ms": round(elapsed * 1000, 2)},
            )


def install_metrics(app: FastAPI, *, key_required: bool = False) -> RequestMetrics:
    """``GET /metrics`` on the app's registry (``app.state.metrics_registry``, for business metrics too), and
    the request metrics the telemetry middleware records into it. ``key_required``: only for an API key with
    :data:`METRICS_SCOPE`."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    request_metrics = RequestMetrics(registry)
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response, include_in_schema=True)
    async def metrics(request: Request, credentials: BearerCredentials) -> Response:
        if key_required:
            caller_with_scope(request, credentials, METRICS_SCOPE)
        return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    return request_metrics
