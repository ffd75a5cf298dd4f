"""Prometheus metrics: request rate, latency and errors per route, plus each service's business metrics.

Every app has its own registry (``Runtime.metrics_registry``), so several apps can live in one process
(as in tests) and a service adds its gauges and counters to the same ``/metrics`` page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from servicekit.apikeys import BearerCredentials, caller_with_scope
from servicekit.openapi import ANONYMOUS_ALLOWED, QUIET_PATHS

log = logging.getLogger("servicekit.access")
METRICS_SCOPE = "metrics:read"
"""The scope that reads ``/metrics`` and the details of ``/health/ready`` where they need a key."""


class RequestMetrics:
    """Counts and times every HTTP request by method, route template and status, counts the requests being
    handled, and writes one access log line per request. Called by
    ``servicekit.telemetry.RequestTelemetryMiddleware`` inside the request's span (so the line carries the
    correlation id): one middleware does all the per-request bookkeeping."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being handled by this process (open event streams included)",
            registry=registry,
        )
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


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What a durable queue holds for one destination or channel, as one aggregate query read it."""

    pending: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None


def queue_figures(
    pending: Mapping[str, tuple[int, datetime | None]], dead: Mapping[str, int]
) -> dict[str, QueueFigures]:
    """Figures per label value from what an aggregate query counted: ``pending`` (how many, and the oldest's
    time) and ``dead``."""
    return {
        value: QueueFigures(
            pending=pending.get(value, (0, None))[0],
            dead=dead.get(value, 0),
            oldest_pending_at=pending.get(value, (0, None))[1],
        )
        for value in {*pending, *dead}
    }


ReadQueue = Callable[[], Awaitable[Mapping[str, QueueFigures]]]

QUEUE_READ_MIN_SECONDS = 1.0
"""Scrapes within this long of the last read share its figures: ``/metrics`` cannot be made to hammer the
database, however often it is asked."""


class ScrapedGauges(Collector):
    """Gauges whose figures a query reads when ``/metrics`` is scraped (``Runtime.add_scraped_gauges``), at
    most once per :data:`QUEUE_READ_MIN_SECONDS` however often it is asked; a failing read keeps the last
    figures and is logged. Subclasses read in :meth:`read_figures` and report in ``collect``."""

    name: str

    def __init__(self) -> None:
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def read_figures(self) -> None:
        raise NotImplementedError

    async def refresh(self) -> None:
        async with self._lock:
            if self._read_at is not None and time.monotonic() - self._read_at < QUEUE_READ_MIN_SECONDS:
                return
            try:
                await self.read_figures()
            except Exception as exc:
                log.warning(
                    "figures not read for /metrics; the last ones are reported",
                    extra={"gauges": self.name, "error": f"{type(exc).__name__}: {exc}"},
                )
            self._read_at = time.monotonic()


class QueueGauges(ScrapedGauges):
    """The gauges of a durable queue (an outbox, the notifier's delivery queue), per ``label`` value:

    - ``<name>_pending``: not delivered yet (due, waiting for a retry, or being delivered);
    - ``<name>_in_flight``: being delivered by this process right now (claimed, not yet recorded): summed
      over replicas by Prometheus;
    - ``<name>_dead``: given up on, waiting for an operator to replay them;
    - ``<name>_oldest_pending_age_seconds``: how long the oldest pending item has waited (0 when none).

    Pending and dead come from one aggregate query (``read``) run when ``/metrics`` is scraped, at most once
    per :data:`QUEUE_READ_MIN_SECONDS` (:meth:`refresh`); a failing read keeps the last figures and is logged.
    In flight is counted in memory by the worker (:meth:`delivering`). Every value of ``always`` is reported
    even when its queue is empty, so a sum over it is 0 rather than absent.
    """

    def __init__(
        self, *, name: str, label: str, noun: str, read: ReadQueue, always: Iterable[str] = ()
    ) -> None:
        super().__init__()
        self.name = name
        self.label = label
        self.noun = noun
        self.read = read
        self.always = list(always)
        self.figures: Mapping[str, QueueFigures] = {}
        self.in_flight: Tally[str] = Tally()

    async def read_figures(self) -> None:
        self.figures = await self.read()

    @contextmanager
    def delivering(self, counts: Mapping[str, int]) -> Iterator[None]:
        """Counts ``counts`` (per label value) as in flight while the block runs."""
        self.in_flight.update(counts)
        try:
            yield
        finally:
            self.in_flight.subtract(counts)

    def collect(self) -> Iterable[Metric]:
        now = datetime.now(UTC)
        labels = [self.label]
        pending = GaugeMetricFamily(f"{self.name}_pending", f"{self.noun} not delivered yet", labels=labels)
        in_flight = GaugeMetricFamily(
            f"{self.name}_in_flight", f"{self.noun} being delivered by this process", labels=labels
        )
        dead = GaugeMetricFamily(f"{self.name}_dead", f"{self.noun} given up on, to replay", labels=labels)
        oldest = GaugeMetricFamily(
            f"{self.name}_oldest_pending_age_seconds",
            f"How long the oldest pending {self.noun.lower()} has waited",
            labels=labels,
        )
        values = sorted({*self.always, *self.figures, *(k for k, v in self.in_flight.items() if v)})
        for value in values:
            figures = self.figures.get(value, QueueFigures())
            pending.add_metric([value], figures.pending)
            in_flight.add_metric([value], max(self.in_flight[value], 0))
            dead.add_metric([value], figures.dead)
            age = (now - figures.oldest_pending_at).total_seconds() if figures.oldest_pending_at else 0.0
            oldest.add_metric([value], max(age, 0.0))
        return [pending, in_flight, dead, oldest]


def install_metrics(
    app: FastAPI,
    *,
    registry: CollectorRegistry | None = None,
    refreshed: list[ScrapedGauges] | None = None,
    key_required: bool = False,
) -> RequestMetrics:
    """``GET /metrics`` on ``registry`` (the runtime's, for business metrics too), and the
    request metrics the telemetry middleware records into it. The ``refreshed`` gauges (the list, with what
    is added to it later) read their figures before each scrape is answered.
    ``key_required``: only for an API key with :data:`METRICS_SCOPE`."""
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = registry if registry is not None else CollectorRegistry()
    for process_wide in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
        # The process's CPU, memory, open files and garbage collections: one process, several registries
        # (apps in one test process), so the shared collectors are registered on each.
        registry.register(process_wide)
    refreshed = refreshed if refreshed is not None else []
    request_metrics = RequestMetrics(registry)
    router = APIRouter(tags=["operations"])

    @router.get(
        "/metrics",
        operation_id="getMetrics",
        summary="Prometheus metrics",
        response_class=Response,
        openapi_extra=None if key_required else ANONYMOUS_ALLOWED,
    )
    async def metrics(request: Request, credentials: BearerCredentials) -> Response:
        if key_required:
            caller_with_scope(request, credentials, METRICS_SCOPE)
        for gauges in refreshed:
            await gauges.refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    return request_metrics
