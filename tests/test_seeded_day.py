"""A seeded desk: ``scripts/seed_day.py`` plays a day through order-api and wallet-pool (their routes, service
functions and relays, under a simulated clock), then ``GET /v1/stats/orders`` and wallet-pool's
``GET /v1/stats/queue`` are read over HTTP and every figure is recomputed here from the rows the day left, with
the same recomputations the endpoints' own tests use on their small fixtures."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from order_api.orders.metrics import CLOSED_OUTCOMES, CREATED_OUTCOMES
from order_api.orders.models import Order, OrderEvent
from order_api.testing import Seeded, assert_report_matches_orders
from servicekit.db import SimulatedClock
from servicekit.state import service_state
from servicekit.testing import metric_samples, migrated_database
from wallet_pool.testing import assert_queue_figures_match_rows, queue_rows

SEED_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "seed_day.py"
ORDERS = 200


def seed_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seed_day", SEED_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def as_seeded(order: Order, history: list[OrderEvent]) -> Seeded:
    """An order and its history as the statistics' recomputation reads them (seconds after creation)."""

    def after(moment: datetime) -> float:
        return (moment - order.created_at).total_seconds()

    takes = [
        (event.actor, after(event.created_at))
        for event in history
        if (event.from_status, event.to_status) == ("awaiting_deposit", "in_progress")
    ]
    close = None
    if order.closed_at is not None:
        closing = [event for event in history if event.to_status == order.status][-1]
        who = "customer" if closing.actor.startswith("customer:") else closing.actor
        close = (order.status, after(order.closed_at), who)
    return Seeded(
        currency=order.from_currency,
        network=order.from_network,
        amount=str(order.amount),
        created=order.created_at,
        address_after=None if order.address_assigned_at is None else after(order.address_assigned_at),
        takes=takes,
        close=close,
    )


async def test_a_production_desk_is_never_seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seed_day = seed_script()
    monkeypatch.setenv("WALLET_POOL_ENVIRONMENT", "production")
    with pytest.raises(seed_day.SeedRefused, match="production"):
        async with seed_day.built_desk(tmp_path, seed_day.DatabaseUrls(order_api=None, wallet_pool=None)):
            pass


async def test_the_stats_of_a_seeded_day_are_the_figures_its_rows_give(tmp_path: Path) -> None:
    seed_day = seed_script()
    day = datetime.now(UTC).date() - timedelta(days=2)  # closed by now, within the queue's peak-hour days
    since = datetime.combine(day, time(0), tzinfo=UTC)
    until = since + timedelta(days=1)
    async with migrated_database("order-api", "wallet-pool", prefix="seeded_day") as url:
        urls = seed_day.DatabaseUrls(order_api=url, wallet_pool=url)
        plan = seed_day.plan_day(day=day, orders=ORDERS, seed=16)
        async with seed_day.built_desk(tmp_path, urls) as desk:
            with SimulatedClock(since) as clock:
                done = await seed_day.Day(desk, plan, clock, seed=16, until=datetime.now(UTC)).play()
            metrics = metric_samples((await desk.orders.get("/metrics")).text)
            window = {"since": since.isoformat(), "until": until.isoformat(), "tz": "UTC"}
            response = await desk.orders.get(
                "/v1/stats/orders", params=window, headers=seed_day.bearer(desk.admin_token)
            )
            assert response.status_code == 200, response.text
            report = response.json()
            response = await desk.pool.get(
                "/v1/stats/queue", params=window, headers=seed_day.bearer(desk.pool_admin_key)
            )
            assert response.status_code == 200, response.text
            queue = response.json()

            async with service_state(desk.order_api).runtime.database.sessionmaker() as session:
                orders = (await session.scalars(select(Order))).all()
                events = (await session.scalars(select(OrderEvent).order_by(OrderEvent.id))).all()
            async with service_state(desk.wallet_pool).runtime.database.sessionmaker() as session:
                allocations = await queue_rows(session)
        with pytest.raises(seed_day.SeedRefused, match="has orders already"):  # another day needs --force
            async with seed_day.built_desk(tmp_path, urls):
                pass

    # A realistic day: the pools ran dry at peak, and every way an order ends happened.
    assert done.orders == ORDERS
    assert done.queued_at_intake > 0
    assert done.completed > done.cancelled_by_operator > 0
    assert done.cancelled_by_customer > 0

    histories: dict[str, list[OrderEvent]] = {}
    for event in events:
        histories.setdefault(event.order_id, []).append(event)
    seeded = [as_seeded(order, histories[order.id]) for order in orders]
    assert len(seeded) == ORDERS
    assert all(since <= o.created < until for o in seeded)

    settings = service_state(desk.order_api).settings
    assert_report_matches_orders(report, seeded, bands=settings.stats_amount_bands)  # type: ignore[attr-defined]
    conversion = report["conversion"]
    assert (conversion["completed"], conversion["cancelled_by_operator"]) == (
        done.completed,
        done.cancelled_by_operator,
    )
    assert conversion["cancelled_by_customer"] == done.cancelled_by_customer
    assert (
        conversion["expired"]
        == ORDERS - done.completed - done.cancelled_by_operator - done.cancelled_by_customer
    )
    assert conversion["expired"] > 0
    assert conversion["open"] == 0
    assert (report["payments"]["orders"], report["payments"]["exact"]) == (done.completed, done.completed)
    weekdays = {t["day"]: t["orders"] for t in report["by_day_of_week"] if t["orders"]}
    assert weekdays == {day.isoweekday(): ORDERS}
    assert [(t["orders"], t["completed"]) for t in report["buckets"]] == [(ORDERS, done.completed)]
    busiest = max(report["by_hour_of_day"], key=lambda t: t["orders"])["hour"]
    assert busiest in {*range(9, 14), *range(16, 21)}  # the day's two peaks

    currencies: dict[str, Any] = {c["currency"]: c for c in queue["currencies"]}
    assert set(currencies) == {"BTC", "ETH", "USDT"}
    assert_queue_figures_match_rows(currencies, allocations, since=since, until=until, tz=ZoneInfo("UTC"))
    assert (
        sum(c["abandonment"]["abandoned"] for c in currencies.values()) > 0
    )  # some queued customers gave up
    assert sum(c["abandonment"]["queued"] for c in currencies.values()) == done.queued_at_intake

    # The same day as order-api's /metrics counted it while it happened.
    created = {o: metrics[f'orders_created_total{{outcome="{o}"}}'] for o in CREATED_OUTCOMES.values()}
    assert created == {
        "address_assigned": ORDERS - done.queued_at_intake,
        "queued": done.queued_at_intake,
        "address_pending": 0,
    }
    for outcome in CLOSED_OUTCOMES:
        assert metrics[f'orders_closed_total{{outcome="{outcome}"}}'] == conversion[outcome], outcome
    first_takes = [o.takes[0][1] - o.address_after for o in seeded if o.takes and o.address_after is not None]
    handled = [
        o.close[1] - o.takes[-1][1] for o in seeded if o.close and o.takes and o.close[2] != "customer"
    ]
    for name, seconds in (("order_take_seconds", first_takes), ("order_handling_seconds", handled)):
        assert (
            metrics[f"{name}_count"]
            == len(seconds)
            == report["durations"]["time_to_take" if name == "order_take_seconds" else "handling_time"][
                "count"
            ]
        )
        assert abs(metrics[f"{name}_sum"] - sum(seconds)) < 0.01, name
