"""A service's own API health, judged from the request metrics it records (``servicekit.metrics``): the share
of requests answered 5xx, and each route's p95 latency, over the last ``api_alert_window_seconds``.

Every ``api_alert_check_seconds`` the runtime reads the cumulative counters of ``http_requests_total`` and
``http_request_duration_seconds`` from its registry and keeps the readings of one window; the figures are the
difference between the newest reading and the oldest one at least a window old, so a condition is judged
only on a full window ("for N minutes"). The p95 is the upper bound of the histogram bucket it falls in.

The figures are this process's (each replica judges its own requests): the report's key names the service
and the replica (``hostname``), so replicas do not resolve each other's alerts. A crossing is reported to the
notifier through the outbox once (``api.degraded``), and once more only when a further route or the error
rate joins in, and again once a window while it lasts (so the notifier can resolve the alert of a replica
that stopped reporting); ``api.recovered`` once the error share is below half its threshold and no route is slow. The
last report is read back from the outbox (``servicekit.outbox.last_report``).
"""

from __future__ import annotations

import math
import socket
import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from sqlalchemy import Table

from desk_contracts.events import ApiDegraded, ApiHealth, ApiRecovered, SlowRoute
from servicekit.db import Database, utcnow
from servicekit.outbox import last_report, publish


@dataclass(frozen=True, slots=True)
class RequestTotals:
    """The cumulative request counters at one moment, per route (``METHOD /template``)."""

    at: float
    requests: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)


def read_totals(registry: CollectorRegistry, *, at: float, exclude: Collection[str]) -> RequestTotals:
    totals = RequestTotals(at=at)
    for family in registry.collect():
        if family.name not in ("http_requests", "http_request_duration_seconds"):
            continue
        for sample in family.samples:
            route = f"{sample.labels.get('method')} {sample.labels.get('route')}"
            if sample.labels.get("route") in exclude:
                continue
            if sample.name == "http_requests_total":
                totals.requests[route] = totals.requests.get(route, 0.0) + sample.value
                if sample.labels.get("status", "").startswith("5"):
                    totals.errors[route] = totals.errors.get(route, 0.0) + sample.value
            elif sample.name == "http_request_duration_seconds_bucket":
                le = float(sample.labels["le"])
                totals.buckets.setdefault(route, {})[le] = sample.value
    return totals


@dataclass(frozen=True, slots=True)
class WindowFigures:
    requests: int
    errors: int
    p95_by_route: dict[str, tuple[float, int]]  # route -> (p95 seconds, requests)

    @property
    def error_percent(self) -> float:
        return 100.0 * self.errors / self.requests if self.requests else 0.0


def p95(buckets: dict[float, float]) -> float:
    """The upper bound of the bucket holding the 95th percentile of cumulative ``buckets`` (``inf`` when
    beyond the largest)."""
    ordered = sorted(buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    for le, count in ordered:
        if count >= 0.95 * total:
            return le
    return math.inf


def window_figures(old: RequestTotals, new: RequestTotals) -> WindowFigures:
    requests = sum(new.requests.values()) - sum(old.requests.values())
    errors = sum(new.errors.values()) - sum(old.errors.values())
    routes: dict[str, tuple[float, int]] = {}
    for route, buckets in new.buckets.items():
        before = old.buckets.get(route, {})
        diff = {le: count - before.get(le, 0.0) for le, count in buckets.items()}
        count = int(diff.get(math.inf, 0.0))
        if count:
            routes[route] = (p95(diff), count)
    return WindowFigures(int(requests), int(errors), routes)


@dataclass
class ApiHealthWatch:
    """Readings of one window and the thresholds (see the module's docstring)."""

    registry: CollectorRegistry
    database: Database
    table: Table
    service: str
    destination: str
    window_seconds: float
    error_percent: float
    p95_seconds: float
    min_requests: int
    exclude_routes: Collection[str] = ()
    replica: str = field(default_factory=socket.gethostname)
    readings: deque[RequestTotals] = field(default_factory=deque)
    told_at: float | None = None
    """When this process last wrote a report (its clock); ``None`` before its first."""

    def observe(self, *, at: float | None = None) -> WindowFigures | None:
        """Take a reading; the figures of the last full window, or ``None`` before one has passed."""
        now = time.monotonic() if at is None else at
        self.readings.append(read_totals(self.registry, at=now, exclude=self.exclude_routes))
        while len(self.readings) > 1 and self.readings[1].at <= now - self.window_seconds:
            self.readings.popleft()
        oldest = self.readings[0]
        if oldest.at > now - self.window_seconds:
            return None
        return window_figures(oldest, self.readings[-1])

    def judge(self, figures: WindowFigures, *, share: float = 1.0) -> tuple[bool, list[SlowRoute]]:
        """(the error share is at ``share`` of its threshold, the routes slower than ``share`` of theirs)."""
        errors = (
            bool(self.error_percent)
            and figures.requests >= self.min_requests
            and figures.error_percent >= self.error_percent * share
        )
        slow = [
            SlowRoute(route=route, p95_seconds=min(seconds, 1e9), requests=count)
            for route, (seconds, count) in sorted(figures.p95_by_route.items())
            if self.p95_seconds and count >= self.min_requests and seconds > self.p95_seconds * share
        ]
        return errors, slow

    async def check(self, *, at: float | None = None) -> int:
        """One look; returns how many reports were written (0 or 1)."""
        now = time.monotonic() if at is None else at
        figures = self.observe(at=now)
        if figures is None:
            return 0
        aggregate_id = f"api.health:{self.service}:{self.replica}"
        errors, slow = self.judge(figures)
        async with self.database.sessionmaker.begin() as session:
            last = await last_report(
                session, table=self.table, destination=self.destination, aggregate_id=aggregate_id
            )
            raised = last is not None and last.event_type == ApiDegraded.event_type
            told_errors = raised and bool(last and last.payload.get("errors_alert"))
            told = [
                SlowRoute.model_validate(r)
                for r in (last.payload.get("slow_routes", []) if last and raised else [])
            ]
            told_routes = {r.route for r in told}
            common = ApiHealth(
                service=self.service,
                replica=self.replica,
                requests=figures.requests,
                errors=figures.errors,
                error_percent=round(figures.error_percent, 2),
                window_seconds=self.window_seconds,
                observed_at=utcnow(),
            ).model_dump()
            degraded = ApiDegraded(
                **common,
                error_threshold_percent=self.error_percent,
                p95_threshold_seconds=self.p95_seconds,
                errors_alert=errors or told_errors,
                # the routes told before stay in the alert until it recovers: one that is fine for a
                # moment and slow again is no new crossing
                slow_routes=[*slow, *(r for r in told if r.route not in {s.route for s in slow})],
            )
            report: ApiDegraded | ApiRecovered
            if (errors and not told_errors) or {r.route for r in slow} - told_routes:
                report = degraded
            elif raised and figures.requests >= self.min_requests and not any(self.judge(figures, share=0.5)):
                # Too few requests to judge is not "healthy again": a replica out of its Service's rotation
                # (failing readiness) gets no traffic and is not recovered for it.
                report = ApiRecovered(**common)
            elif raised and (self.told_at is None or now - self.told_at >= self.window_seconds):
                # Still degraded: said again once a window, so that the notifier can tell a replica that is
                # still degraded from one that is gone (replaced in a rollout) and resolve the latter's alert.
                report = degraded
            else:
                return 0
            await publish(
                session, self.table, destination=self.destination, event=report, aggregate_id=aggregate_id
            )
        self.told_at = now
        return 1
