"""order-api's business gauges on ``/metrics``: the open orders by status, read from the database when
Prometheus scrapes (at most once a second, ``servicekit.metrics.ScrapedGauges``), so every replica reports the
same desk-wide figures and nothing is counted on the intake path."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from order_api.orders import repository
from order_api.orders.lifecycle import OPEN
from servicekit.db import Database
from servicekit.metrics import ScrapedGauges


class OpenOrderGauges(ScrapedGauges):
    """``orders_open{status}``: the orders not closed yet, per status (every open status reported, 0 when
    none is in it)."""

    name = "orders_open"

    def __init__(self, *, database: Database) -> None:
        super().__init__()
        self.database = database
        self.counts: dict[str, int] = {}

    async def read_figures(self) -> None:
        async with self.database.sessionmaker() as session:
            self.counts = await repository.open_orders_by_status(session)

    def collect(self) -> Iterable[Metric]:
        orders = GaugeMetricFamily(self.name, "Orders not closed yet, by status", labels=["status"])
        for status in sorted(OPEN):
            orders.add_metric([status.value], self.counts.get(status.value, 0))
        return [orders]
