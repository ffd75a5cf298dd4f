"""``GET /v1/stats/orders``: a realistic small day written as rows, and every figure recomputed here from those
rows, on PostgreSQL and on the embedded SQLite; the window, time zone and buckets; who sees what; CSV; bad
input; and the query plans at a million orders."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_api.customers.service import find_or_create_customer
from order_api.db import SCHEMA
from order_api.operators.schemas import RoleName
from order_api.operators.service import OPERATOR_TOKEN_PREFIX, OperatorPrincipal
from order_api.orders.models import Order, OrderEvent
from order_api.protection import DataProtection
from order_api.stats import service
from order_api.stats.schemas import OrderStatsQuery
from order_api.testing import (
    ApiKeys,
    OrderApi,
    OrderApiRunner,
    Seeded,
    SettingsFactory,
    assert_report_matches_orders,
    embedded_order_api,
    expected,
    group_by,
    hire,
    order_body,
)
from servicekit.db import create_engine
from servicekit.state import service_state

DAY = datetime(2021, 3, 1, tzinfo=UTC)  # a Monday
WINDOW = {"since": DAY.isoformat(), "until": (DAY + timedelta(days=1)).isoformat()}
BANDS = {"BTC": [Decimal("0.01"), Decimal("0.1"), Decimal("1")], "USDT": [Decimal("1000")]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def at(hour: int, minute: int, day: int = 0) -> datetime:
    return DAY + timedelta(days=day, hours=hour, minutes=minute)


def the_day() -> list[Seeded]:
    """Operators ``a`` and ``b``, support ``s``; ``customer`` stands for the customer who placed the order."""
    return [
        Seeded(
            "BTC", "bitcoin", "0.05", at(9, 10), 30, [("a", 120)], ("completed", 900, "a"), received="0.05"
        ),
        Seeded(
            "BTC", "bitcoin", "0.5", at(10, 20), 10, [("b", 60)], ("completed", 1800, "b"), received="0.49"
        ),
        Seeded("ETH", "ethereum", "2", at(11, 5), 5, [("a", 300)], ("cancelled", 400, "a")),
        Seeded("USDT", "TRC20", "500", at(12, 40), 20, [], ("cancelled", 100, "customer")),
        Seeded("USDT", "TRC20", "20000", at(13, 15), 40, [], ("expired", 1800, "system:expiry")),
        Seeded(
            "BTC",
            "bitcoin",
            "0.005",
            at(23, 30),
            15,
            [("b", 200), ("a", 700)],
            ("completed", 1500, "a"),
            received="0.0061",
        ),
        Seeded("ETH", "ethereum", "0.05", at(14, 0), None, [], ("cancelled", 600, "customer")),
        Seeded("USDT", "ERC20", "50", at(15, 0), 8, [("a", 90)]),
        Seeded("BTC", "bitcoin", "2", at(16, 45), 12, [("b", 30)], ("cancelled", 200, "s")),
        Seeded("BTC", "bitcoin", "0.02", at(1, 50), 3, [("b", 40)], ("completed", 300, "b")),
        Seeded("USDT", "TRC20", "1000", at(0, 0), 60),
        # outside the window: the day before, and the first instant of the next day
        Seeded(
            "BTC",
            "bitcoin",
            "0.3",
            at(23, 59, day=-1),
            10,
            [("a", 20)],
            ("completed", 100, "a"),
            received="0.2",
        ),
        Seeded(
            "ETH", "ethereum", "1", at(0, 0, day=1), 10, [("b", 20)], ("completed", 100, "b"), received="1"
        ),
        # two days on: taken by a, handed to b by support, completed by b
        Seeded(
            "BTC", "bitcoin", "0.1", at(10, 0, day=2), 10, [("a", 60)], ("completed", 900, "b"), ("b", 300)
        ),
    ]


@dataclass
class Desk:
    api: OrderApi
    api_keys: ApiKeys
    staff: dict[str, dict[str, Any]]  # key → {"id", "token"}
    orders: list[Seeded]

    def auth(self, who: str) -> dict[str, str]:
        return bearer(self.api_keys.admin if who == "admin-key" else self.staff[who]["token"])

    async def stats(self, who: str = "s", **params: Any) -> dict[str, Any]:
        response = await self.api.client.get("/v1/stats/orders", params=params, headers=self.auth(who))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def write_day(
    session: AsyncSession, protection: DataProtection, staff: dict[str, dict[str, Any]]
) -> None:
    """The day's orders and their history, as the lifecycle writes them."""
    customer = await find_or_create_customer(
        session=session, protection=protection, email=f"c.{uuid.uuid4().hex[:8]}@example.com", locale="en"
    )

    def actor(key: str) -> str:
        return (
            f"customer:{customer.id}"
            if key == "customer"
            else (key if ":" in key else f"operator:{staff[key]['id']}")
        )

    for seeded in the_day():
        order_id = str(uuid.uuid4())
        created = seeded.created
        steps: list[tuple[str, str, datetime]] = [("awaiting_address", f"customer:{customer.id}", created)]
        if seeded.address_after is None:
            steps.append(("queued", "system:wallet-pool", created))
        else:
            steps.append(
                ("awaiting_deposit", "system:wallet-pool", created + timedelta(seconds=seeded.address_after))
            )
        holder = None
        details: dict[int, dict[str, Any]] = {}  # by step
        for index, (key, seconds) in enumerate(seeded.takes):
            if index:  # the one before gave it back
                steps.append(("awaiting_deposit", actor(key), created + timedelta(seconds=seconds - 1)))
            steps.append(("in_progress", actor(key), created + timedelta(seconds=seconds)))
            holder = staff[key]["id"]
        if seeded.reassigned_to is not None:
            key, seconds = seeded.reassigned_to
            details[len(steps)] = {"previous_operator_id": holder, "operator_id": staff[key]["id"]}
            steps.append(("in_progress", actor("s"), created + timedelta(seconds=seconds)))
            holder = staff[key]["id"]
        closed_at = None
        if seeded.close is not None:
            status, seconds, who = seeded.close
            closed_at = created + timedelta(seconds=seconds)
            steps.append((status, actor(who), closed_at))
            if status == "expired":
                holder = None
        await session.execute(
            insert(Order).values(
                id=order_id,
                customer_id=customer.id,
                from_currency=seeded.currency,
                from_network=seeded.network,
                to_currency="USDT" if seeded.currency != "USDT" else "BTC",
                to_network="TRC20" if seeded.currency != "USDT" else "bitcoin",
                amount=Decimal(seeded.amount),
                payout_address_sealed="sealed",
                locale="en",
                status=seeded.status,
                priority="normal",
                allocation_state="allocated",
                client_ip="192.0.2.1",
                operator_id=holder,
                version=len(steps),
                created_at=created,
                updated_at=steps[-1][2],
                address_assigned_at=(
                    None
                    if seeded.address_after is None
                    else created + timedelta(seconds=seeded.address_after)
                ),
                closed_at=closed_at,
                **_transaction_columns(seeded, closed_at),
            )
        )
        previous = None
        for step, (to_status, who, moment) in enumerate(steps):
            await session.execute(
                insert(OrderEvent).values(
                    order_id=order_id,
                    from_status=previous,
                    to_status=to_status,
                    actor=who,
                    channel="system" if who.startswith("system") else "rest",
                    details=details.get(step, {}),
                    created_at=moment,
                )
            )
            previous = to_status


def _transaction_columns(seeded: Seeded, closed_at: datetime | None) -> dict[str, Any]:
    """The record a completion wrote: the deposit received and a payout."""
    if seeded.received is None:
        return {}
    received, ordered = Decimal(seeded.received), Decimal(seeded.amount)
    return {
        "deposit_tx_hash": "a" * 64,
        "deposit_amount": received,
        "deposit_seen_at": closed_at,
        "payout_tx_hash": "b" * 64,
        "payout_amount": Decimal("100"),
        "payment_outcome": "exact"
        if received == ordered
        else "underpaid"
        if received < ordered
        else "overpaid",
    }


@pytest.fixture(params=["postgresql", "sqlite"])
async def desk(
    request: pytest.FixtureRequest,
    order_api: OrderApiRunner,
    db_session: AsyncSession,
    api_keys: ApiKeys,
    protection: DataProtection,
    tmp_path: Path,
) -> AsyncIterator[Desk]:
    """The day on PostgreSQL (in the test's rolled-back session) or on the embedded SQLite."""
    if request.param == "postgresql":
        async with order_api(session=db_session, stats_amount_bands=BANDS) as api:
            staff = {key: await hire(api, api_keys, role=role) for key, role in _ROLES.items()}
            await write_day(db_session, protection, staff)
            yield Desk(api, api_keys, staff, the_day())
        return
    async with embedded_order_api(_with_bands(order_api), tmp_path / "var") as api:
        staff = {key: await hire(api, api_keys, role=role) for key, role in _ROLES.items()}
        engine = service_state(api.app).runtime.database.engine
        async with async_sessionmaker(engine)() as session:
            await write_day(session, protection, staff)
            await session.commit()
        yield Desk(api, api_keys, staff, the_day())


_ROLES = {"a": "operator", "b": "operator", "s": "support", "admin": "admin"}


def _with_bands(runner: OrderApiRunner) -> OrderApiRunner:
    def run(*, session: AsyncSession | None = None, **overrides: Any) -> Any:
        return runner(session=session, stats_amount_bands=BANDS, **overrides)

    return run


# -- the figures, recomputed from the rows --------------------------------------------------------------------


def in_window(orders: list[Seeded]) -> list[Seeded]:
    return [o for o in orders if DAY <= o.created < DAY + timedelta(days=1)]


async def test_every_figure_matches_the_rows_of_the_day(desk: Desk) -> None:
    report = await desk.stats(**WINDOW)
    day = in_window(desk.orders)

    assert report["scope"] == "desk"
    assert report["conversion"]["created"] == len(day) == 11
    assert_report_matches_orders(report, day, bands=desk.api.settings.stats_amount_bands)
    assert set(report["by_status"]) >= {"queued", "awaiting_deposit", "in_progress", "completed", "expired"}
    assert {"0-0.01", "0.01-0.1", "0.1-1", "1+"} <= {t["band"] for t in report["by_band"]}
    assert {t["band"] for t in report["by_band"] if t["currency"] == "USDT"} == {
        "0-1000",
        "1000+",
    }  # the setting
    assert [(t["name"], t["orders"]) for t in report["by_day_of_week"]][:2] == [
        ("monday", 11),
        ("tuesday", 0),
    ]
    assert [(t["start"], t["orders"], t["completed"]) for t in report["buckets"]] == [
        ("2021-03-01T00:00:00Z", 11, sum(o.status == "completed" for o in day))
    ]


async def test_received_versus_ordered_matches_the_recorded_completions(desk: Desk) -> None:
    report = await desk.stats(**WINDOW)
    recorded = [o for o in in_window(desk.orders) if o.status == "completed" and o.received is not None]
    assert recorded  # the day has completions with a record, and one without (not counted)
    assert any(o.status == "completed" and o.received is None for o in in_window(desk.orders))

    def payment(o: Seeded) -> str:
        received, ordered = Decimal(o.received or 0), Decimal(o.amount)
        return "exact" if received == ordered else "underpaid" if received < ordered else "overpaid"

    outcomes = Counter(payment(o) for o in recorded)
    assert {k: report["payments"][k] for k in ("orders", "exact", "underpaid", "overpaid")} == {
        "orders": len(recorded),
        "exact": outcomes["exact"],
        "underpaid": outcomes["underpaid"],
        "overpaid": outcomes["overpaid"],
    }
    want = []
    for currency, orders in sorted(group_by(recorded, lambda o: o.currency).items()):
        ordered = sum(Decimal(o.amount) for o in orders)
        received = sum(Decimal(o.received or 0) for o in orders)
        counts = Counter(payment(o) for o in orders)
        want.append(
            {
                "currency": currency,
                "orders": len(orders),
                "exact": counts["exact"],
                "underpaid": counts["underpaid"],
                "overpaid": counts["overpaid"],
                "ordered": ordered,
                "received": received,
                "difference": received - ordered,
            }
        )
    got = [
        {**t, **{k: Decimal(t[k]) for k in ("ordered", "received", "difference")}}
        for t in report["payments"]["by_currency"]
    ]
    assert got == want
    # 0.05 of 0.05, 0.49 of 0.5 and 0.0061 of 0.005 BTC: a plain decimal string
    assert report["payments"]["by_currency"][0]["difference"] == "-0.0089"
    operator_slice = await desk.stats("a", **WINDOW)
    assert operator_slice["payments"]["orders"] == sum(
        1 for o in recorded if any(key == "a" for key, _ in o.takes)
    )


async def test_time_zone_and_buckets_count_in_local_time(desk: Desk) -> None:
    day = in_window(desk.orders)
    kolkata = ZoneInfo("Asia/Kolkata")  # +05:30: local hours straddle UTC hours
    report = await desk.stats(**WINDOW, tz="Asia/Kolkata", bucket="hour")
    local = Counter(o.created.astimezone(kolkata).replace(minute=0, second=0) for o in day)
    buckets = {datetime.fromisoformat(t["start"]): t["orders"] for t in report["buckets"]}
    assert len(buckets) == 25  # 05:30 to 05:30 local touches 25 local hours
    assert {start: n for start, n in buckets.items() if n} == local
    assert {t["hour"]: t["orders"] for t in report["by_hour_of_day"] if t["orders"]} == Counter(
        o.created.astimezone(kolkata).hour for o in day
    )
    assert {t["name"]: t["orders"] for t in report["by_day_of_week"] if t["orders"]} == {
        "monday": sum(o.created.astimezone(kolkata).day == 1 for o in day),
        "tuesday": sum(o.created.astimezone(kolkata).day == 2 for o in day),
    }

    new_york = await desk.stats(**WINDOW, tz="America/New_York", bucket="day")
    assert [(t["start"], t["orders"]) for t in new_york["buckets"]] == [
        ("2021-02-28T00:00:00-05:00", sum(o.created.hour < 5 for o in day)),
        ("2021-03-01T00:00:00-05:00", sum(o.created.hour >= 5 for o in day)),
    ]

    empty = await desk.stats(since="2020-01-01T00:00:00Z", until="2020-01-02T00:00:00Z")
    assert (empty["conversion"]["created"], empty["conversion"]["completion_rate"]) == (0, None)
    assert {name: figures["p50"] for name, figures in empty["durations"].items()} == dict.fromkeys(
        empty["durations"]
    )
    assert (empty["by_currency"], empty["by_band"], len(empty["buckets"])) == ([], [], 1)

    narrow = await desk.stats(since=at(9, 0).isoformat(), until=at(12, 0).isoformat(), bucket="hour")
    assert narrow["conversion"]["created"] == 3
    assert [t["orders"] for t in narrow["buckets"]] == [1, 1, 1]


async def test_an_operator_sees_the_orders_they_took_and_support_and_admins_see_all(desk: Desk) -> None:
    day = in_window(desk.orders)
    for key in ("a", "b"):
        mine = [o for o in day if any(taker == key for taker, _ in o.takes)]
        report = await desk.stats(key, **WINDOW)
        assert (report["scope"], report["operator_id"]) == ("operator", desk.staff[key]["id"])
        assert report["conversion"]["created"] == len(mine)
        assert {k: v for k, v in report["by_status"].items() if v} == Counter(o.status for o in mine)
        assert report["durations"] == expected(mine)["durations"]
    for who in ("s", "admin", "admin-key"):
        report = await desk.stats(who, **WINDOW)
        assert (report["scope"], report["conversion"]["created"]) == ("desk", len(day))


async def test_an_order_handed_to_an_operator_by_a_reassignment_is_in_their_slice_too(desk: Desk) -> None:
    two_days_on = {
        "since": (DAY + timedelta(days=2)).isoformat(),
        "until": (DAY + timedelta(days=3)).isoformat(),
    }
    for key in ("a", "b"):  # a took it; b holds it since support handed it over, and completed it
        report = await desk.stats(key, **two_days_on)
        assert (report["conversion"]["created"], report["conversion"]["completed"]) == (1, 1), key
    assert (await desk.stats("s", **two_days_on))["conversion"]["created"] == 1


async def test_the_csv_is_the_json_in_long_form(desk: Desk) -> None:
    report = await desk.stats(**WINDOW, tz="Europe/Berlin")
    response = await desk.api.client.get(
        "/v1/stats/orders",
        params={**WINDOW, "tz": "Europe/Berlin"},
        headers={**desk.auth("s"), "Accept": "text/csv"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == ["section", "key", "metric", "value"]
    cells = {(r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    assert len(cells) == len(rows)  # one figure a line, no repeats
    assert cells[("window", "", "tz")] == "Europe/Berlin"
    for status, n in report["by_status"].items():
        assert cells[("by_status", status, "orders")] == str(n)
    for name, value in report["conversion"].items():
        assert cells[("conversion", "", name)] == str(value)
    for name, figures in report["durations"].items():
        for metric, value in figures.items():
            assert cells[("durations", name, metric)] == ("" if value is None else str(value))
    for t in report["by_currency"]:
        assert Decimal(cells[("by_currency", f"{t['currency']}/{t['network']}", "amount")]) == Decimal(
            t["amount"]
        )
    for t in report["buckets"]:
        start = datetime.fromisoformat(t["start"]).isoformat()
        assert cells[("buckets", start, "orders")] == str(t["orders"])
    assert sum(int(cells[("by_hour_of_day", str(h), "orders")]) for h in range(24)) == 11
    for metric in ("orders", "exact", "underpaid", "overpaid"):
        assert cells[("payments", "", metric)] == str(report["payments"][metric])
    for t in report["payments"]["by_currency"]:
        for metric in ("ordered", "received", "difference"):
            assert cells[("payments_by_currency", t["currency"], metric)] == t[metric]
        assert cells[("payments_by_currency", t["currency"], "underpaid")] == str(t["underpaid"])


async def test_permissions_and_bad_input(api: OrderApi, api_keys: ApiKeys) -> None:
    telegram_user_id = uuid.uuid4().int % 10**9
    operator = await hire(api, api_keys, telegram_user_id=telegram_user_id)
    ok = await api.client.get("/v1/stats/orders", headers=bearer(operator["token"]))
    assert ok.status_code == 200, ok.text
    default = ok.json()
    since, until = datetime.fromisoformat(default["since"]), datetime.fromisoformat(default["until"])
    assert until - since == timedelta(days=7)
    assert abs(until - datetime.now(UTC)) < timedelta(minutes=1)
    assert (default["tz"], default["bucket"], default["scope"]) == ("UTC", "day", "operator")
    assert len(default["buckets"]) == 8  # 7 days from mid-day touch 8 calendar days
    assert default["conversion"]["created"] == 0  # an operator who took nothing has an empty slice

    placed = await api.client.post("/v1/orders", json=order_body())
    assert placed.status_code == 201, placed.text
    customer_token = placed.json()["session_token"]
    assert customer_token
    assert not customer_token.startswith(OPERATOR_TOKEN_PREFIX)
    assert (await api.client.get("/v1/stats/orders", headers=bearer(customer_token))).status_code == 401
    assert (await api.client.get("/v1/stats/orders")).status_code == 401
    acted_for = await api.client.get(
        "/v1/stats/orders",
        headers={**bearer(api_keys.telegram_gateway), "X-Operator-Telegram-Id": str(telegram_user_id)},
    )
    assert acted_for.status_code == 403, acted_for.text
    assert acted_for.json()["code"] == "acted_for_identity_forbidden"

    async def refused(field: str, **params: str) -> None:
        response = await api.client.get("/v1/stats/orders", params=params, headers=bearer(api_keys.admin))
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]], response.text

    await refused("tz", tz="Mars/Olympus_Mons")
    await refused("tz", tz="../../etc/passwd")
    await refused("until", until="0001-01-01T00:00:00Z")
    await refused("bucket", bucket="week")
    await refused("since", since="2021-03-01T00:00:00")  # no time zone
    await refused("since", since=WINDOW["until"], until=WINDOW["since"])
    await refused("since", since="2020-01-01T00:00:00Z", until="2021-03-01T00:00:00Z")


def test_amount_bands_must_ascend(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValidationError, match="amount bands of BTC"):
        make_settings(stats_amount_bands={"BTC": ["0.1", "0.01"]})
    assert make_settings(stats_amount_bands={"BTC": ["0.5"]}).stats_amount_bands["BTC"] == [Decimal("0.5")]


# -- a million orders ---------------------------------------------------------------------------------------------

MILLION = 1_000_000


async def test_at_a_million_orders_the_queries_read_indexes_only(
    own_database_url: str, make_settings: SettingsFactory, protection: DataProtection
) -> None:
    """A million orders over two years, each with its take in the history; a week's report reads the window
    through ``ix_order_created_at_id`` and the history through ``ix_order_event_order_id_to_status``."""
    engine = create_engine(own_database_url, schema=SCHEMA, pool_size=1)
    try:
        async with async_sessionmaker(engine)() as session:
            customer = await find_or_create_customer(
                session=session, protection=protection, email="bulk@example.com", locale="en"
            )
            started = time.monotonic()
            # Bulk-loaded as a restore would be: the secondary indexes built once at the end (not row by row)
            # and the foreign keys not checked per row (every order has the one customer).
            indexes = await _secondary_indexes(session)
            for name, _ in indexes:
                await session.execute(text(f"DROP INDEX {SCHEMA}.{name}"))
            await session.execute(text("SET LOCAL session_replication_role = replica"))
            await session.execute(
                text(
                    'INSERT INTO "order" (id, customer_id, from_currency, from_network, to_currency, to_network,'
                    " amount, payout_address_sealed, locale, status, priority, allocation_state, client_ip,"
                    " operator_id, version, created_at, updated_at, address_assigned_at, announced_at, closed_at)"
                    " SELECT 'o' || i, :customer, 'BTC', 'bitcoin', 'USDT', 'TRC20', (i % 1000) / 1000.0, 's', 'en',"
                    " (ARRAY['completed','cancelled','expired','in_progress'])[i % 4 + 1], 'normal', 'released',"
                    " '192.0.2.1', 'op', 5, t, t, t + interval '10 seconds', t, t + interval '900 seconds'"
                    " FROM generate_series(1, :n) AS i, LATERAL (SELECT timestamptz '2020-01-01' +"
                    " i * interval '63 seconds' AS t) AS moment"
                ),
                {"customer": customer.id, "n": MILLION},
            )
            await session.execute(
                text(
                    "INSERT INTO order_event (order_id, from_status, to_status, actor, channel, details, created_at)"
                    " SELECT 'o' || i, 'awaiting_deposit', 'in_progress', 'operator:op', 'rest', '{}',"
                    " timestamptz '2020-01-01' + i * interval '63 seconds' + interval '60 seconds'"
                    " FROM generate_series(1, :n) AS i"
                ),
                {"n": MILLION},
            )
            await session.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
            for _, definition in indexes:
                await session.execute(text(definition))
            await session.commit()
            seeded_in = time.monotonic() - started
            await session.execute(text('ANALYZE "order"'))
            await session.execute(text("ANALYZE order_event"))

            statements: list[tuple[str, Any]] = []

            def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
                if statement.lstrip().upper().startswith("SELECT"):
                    statements.append((statement, parameters))

            settings = make_settings(database_url=own_database_url)
            principals = [_principal("support", None), _principal("operator", "op")]
            query = OrderStatsQuery(
                since=datetime(2021, 6, 1, tzinfo=UTC),
                until=datetime(2021, 6, 8, tzinfo=UTC),
                tz="Europe/Berlin",
            )
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            try:
                for principal in principals:
                    report = await service.order_stats(
                        session=session, settings=settings, principal=principal, query=query
                    )
                    assert (
                        report.conversion.created == 7 * 86_400 // 63 + 1 or report.conversion.created > 9000
                    )
                    assert report.durations.time_to_take.p50 == 50.0
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", capture)
            assert len(statements) == 6  # the groups, the percentiles and the payments, for each of the two
            connection = await session.connection()
            for statement, parameters in statements:
                plan = "\n".join(
                    row[0] for row in await connection.exec_driver_sql("EXPLAIN " + statement, parameters)
                )
                assert "Seq Scan" not in plan, plan
                # the payments read the window's completed orders only, through the status-first index
                window = (
                    "ix_order_status_created_at_id"
                    if "payment_outcome" in statement
                    else "ix_order_created_at_id"
                )
                assert window in plan, plan
                if "order_event" in statement:
                    assert "ix_order_event_order_id_to_status" in plan, plan
            assert seeded_in < 60, f"seeding took {seeded_in:.0f} s"
    finally:
        await engine.dispose()


def _bulk_orders_between(query: OrderStatsQuery) -> range:
    """The bulk orders created in the query's window: order ``i`` was created ``63 * i`` seconds into 2020."""
    assert query.since is not None
    assert query.until is not None
    origin = datetime(2020, 1, 1, tzinfo=UTC)
    first = -(-int((query.since - origin).total_seconds()) // 63)
    end = -(-int((query.until - origin).total_seconds()) // 63)
    return range(max(first, 1), min(end, MILLION + 1))


async def _secondary_indexes(session: AsyncSession) -> list[tuple[str, str]]:
    """``(name, CREATE INDEX …)`` of every index of ``order`` and ``order_event`` but their primary keys."""
    rows = await session.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :schema"
            " AND tablename IN ('order', 'order_event') AND indexname NOT LIKE 'pk_%'"
        ),
        {"schema": SCHEMA},
    )
    return [(name, definition) for name, definition in rows]


def _principal(role: RoleName, operator_id: str | None) -> OperatorPrincipal:
    return OperatorPrincipal(
        operator_id=operator_id, role=role, channel="rest", name=role, credential="operator-token"
    )
