"""order-api's business metrics on ``/metrics``.

- Counted as the desk works (in memory, per replica: Prometheus sums them): ``orders_created_total{outcome}``
  at intake, ``orders_closed_total{outcome}`` when an order closes, and the histograms ``order_take_seconds``
  (from an order's deposit address to its first take, by an operator or the auto-assigner) and
  ``order_handling_seconds`` (from the last take to its completion or cancellation by staff). Intake counts without a query; a take and a close by staff read
  the order's takes with one indexed query (``repository.take_moments``).
- Read from the database when Prometheus scrapes (at most once a second, ``servicekit.metrics.ScrapedGauges``),
  so every replica reports the same desk-wide figures: ``orders_open{status}``, and
  ``orders_untouched`` / ``orders_untouched_oldest_seconds``, the orders waiting for their deposit that no
  operator holds or has accepted (``repository.nobody_on_it``), and how long the oldest has had its address.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from order_api.orders import repository
from order_api.orders.lifecycle import OPEN
from order_api.orders.models import OrderStatus
from servicekit.db import Database, utcnow
from servicekit.metrics import ScrapedGauges

CREATED_OUTCOMES = {
    OrderStatus.AWAITING_DEPOSIT.value: "address_assigned",
    OrderStatus.QUEUED.value: "queued",
    OrderStatus.AWAITING_ADDRESS.value: "address_pending",
}
"""What intake decided, by the status it answered: an address at once, a place in the queue, or no answer from
wallet-pool within the intake budget (the reconciler gets the address later)."""
CLOSED_OUTCOMES = ("completed", "cancelled_by_customer", "cancelled_by_operator", "expired")
"""How an order closed, as the order statistics name it (``cancelled_by_operator``: any member of staff)."""
TAKE_BUCKETS = (30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200)
"""Seconds: an order waits for its deposit an hour by default, and the untouched-order alert is at 30 minutes."""
HANDLING_BUCKETS = (60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, 14400)
"""Seconds: most orders are handled in minutes; a held order untouched for 30 minutes returns to the list."""


class OrderMetrics:
    """The counters and histograms, on the app's registry; every label value exported from the start (0)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.created = Counter(
            "orders_created",
            "Orders accepted by intake, by what intake decided: address_assigned, queued or address_pending",
            ["outcome"],
            registry=registry,
        )
        self.closed = Counter(
            "orders_closed",
            "Orders closed, by how: completed, cancelled_by_customer, cancelled_by_operator or expired",
            ["outcome"],
            registry=registry,
        )
        self.take_seconds = Histogram(
            "order_take_seconds",
            "From an order's deposit address to its first take, by an operator or the auto-assigner",
            registry=registry,
            buckets=TAKE_BUCKETS,
        )
        self.handling_seconds = Histogram(
            "order_handling_seconds",
            "From an order's last take to its completion or cancellation by staff",
            registry=registry,
            buckets=HANDLING_BUCKETS,
        )
        for outcome in CREATED_OUTCOMES.values():
            self.created.labels(outcome)
        for outcome in CLOSED_OUTCOMES:
            self.closed.labels(outcome)

    def order_created(self, status: str) -> None:
        """Intake answered an order in ``status`` (a replayed answer is not a new order)."""
        self.created.labels(CREATED_OUTCOMES.get(status, status)).inc()

    def order_closed(self, outcome: str, count: int = 1) -> None:
        self.closed.labels(outcome).inc(count)

    def order_taken(self, *, address_assigned_at: datetime | None, first_take: bool) -> None:
        if first_take and address_assigned_at is not None:
            self.take_seconds.observe(max((utcnow() - address_assigned_at).total_seconds(), 0.0))

    def order_handled(self, *, taken_at: datetime | None) -> None:
        if taken_at is not None:
            self.handling_seconds.observe(max((utcnow() - taken_at).total_seconds(), 0.0))


class OpenOrderGauges(ScrapedGauges):
    """``orders_open{status}``: the orders not closed yet, per status (every open status reported, 0 when none
    is in it); ``orders_untouched`` and ``orders_untouched_oldest_seconds``: the orders awaiting their deposit
    that no operator holds or has accepted, and how long ago the oldest got its address (0 when none)."""

    name = "orders_open"

    def __init__(self, *, database: Database) -> None:
        super().__init__()
        self.database = database
        self.counts: dict[str, int] = {}
        self.untouched = 0
        self.oldest_untouched_at: datetime | None = None

    async def read_figures(self) -> None:
        async with self.database.sessionmaker() as session:
            self.counts = await repository.open_orders_by_status(session)
            self.untouched, self.oldest_untouched_at = await repository.untouched_orders(session)

    def collect(self) -> Iterable[Metric]:
        orders = GaugeMetricFamily(self.name, "Orders not closed yet, by status", labels=["status"])
        for status in sorted(OPEN):
            orders.add_metric([status.value], self.counts.get(status.value, 0))
        untouched = GaugeMetricFamily(
            "orders_untouched", "Orders awaiting their deposit that no operator holds", value=self.untouched
        )
        oldest = self.oldest_untouched_at
        age = GaugeMetricFamily(
            "orders_untouched_oldest_seconds",
            "How long ago the oldest order no operator holds got its deposit address (0 when none)",
            value=max((utcnow() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0,
        )
        return [orders, untouched, age]
