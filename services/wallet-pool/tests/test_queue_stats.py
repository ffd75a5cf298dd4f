"""Queue analytics (``GET /v1/stats/queue``): every figure recomputed here from the allocation rows the test
made, the Erlang C capacity plan against worked examples, CSV against JSON, and bad input."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from wallet_pool.stats import capacity
from wallet_pool.testing import PoolApi, assert_queue_figures_match_rows, queue_rows

# -- Erlang C, by the textbook formula (factorials, no recursion), as the reference -----------------------------


def erlang_c_by_factorials(servers: int, load: float) -> float:
    """C(c, a) = (a^c/c! · c/(c-a)) / (Σ_{k<c} a^k/k! + a^c/c! · c/(c-a))."""
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    return top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)


def test_erlang_c_against_worked_examples() -> None:
    # M/M/2 with a = λ/μ = 1 (utilisation r = 0.5): P(wait) = 2r²/(1+r) = 1/3 (the closed form for two servers).
    assert capacity.erlang_c(2, 1.0) == pytest.approx(1 / 3)
    # The standard table value: 10 Erlangs on 11 servers wait with probability 0.6821.
    assert capacity.erlang_c(11, 10.0) == pytest.approx(0.6821, abs=5e-5)
    # The call-centre example: 360 calls per 30 minutes, 240 s average handling, 55 agents:
    # a = 48 Erlangs, P(wait) = 0.2387, and P(wait > 20 s) = 0.2387 · e^(-(55-48)·20/240) = 0.1332,
    # i.e. 86.7 % answered within 20 s.
    arrival, service = 360 / 1800, 1 / 240
    assert capacity.erlang_c(55, 48.0) == pytest.approx(erlang_c_by_factorials(55, 48.0), rel=1e-9)
    assert capacity.erlang_c(55, 48.0) == pytest.approx(0.2387, abs=5e-5)
    over_20s = capacity.probability_of_waiting_longer(
        55, arrival_rate=arrival, service_rate=service, seconds=20
    )
    assert over_20s == pytest.approx(0.2387009 * math.exp(-7 * 20 / 240), rel=1e-6)
    # The fewest agents with P(wait > 20 s) ≤ 10 %: 56 (55 leave 13.3 % waiting longer).
    needed = capacity.servers_needed(arrival_rate=arrival, service_rate=service, target_wait_seconds=20)
    assert needed == 56
    assert erlang_c_by_factorials(56, 48.0) * math.exp(-8 * 20 / 240) <= 0.10
    # Nothing arrives: no wallet needed; a pool that cannot keep up always queues.
    assert capacity.servers_needed(arrival_rate=0, service_rate=1, target_wait_seconds=1) == 0
    assert capacity.erlang_c(3, 3.0) == 1.0


# -- the figures, recomputed from the rows ---------------------------------------------------------------------


async def make_a_queue(api: PoolApi, session: AsyncSession) -> None:
    """BTC: 2 wallets, 8 orders. a1, a2 get one at once; q1..q6 queue; a1 and a2 finish, so q1 and q2 get their
    wallets; q3 and q4 are cancelled while queued; q5 and q6 still wait. USDT on TRC20: 1 wallet, u1 at once, u2
    queued and handed u1's wallet. Then the times are spread out so the waits differ."""
    await api.stock("BTC", 2)
    await api.stock("USDT", 1, network="TRC20")
    for order in ("a1", "a2"):
        assert (await api.allocate(order)).status_code == 201
    for order in ("q1", "q2", "q3", "q4", "q5", "q6"):
        assert (await api.allocate(order)).status_code == 202
    assert (await api.allocate("u1", "USDT", network="TRC20")).status_code == 201
    assert (await api.allocate("u2", "USDT", network="TRC20")).status_code == 202
    for order in ("a1", "a2", "q3", "q4", "u1"):
        assert (await api.release(order)).status_code == 200
    # Seconds before now: (entered the queue, got the address, released), None where it did not happen.
    spread: dict[str, tuple[int | None, int | None, int | None]] = {
        "a1": (None, 3000, 1200),
        "a2": (None, 2900, 100),
        "q1": (2500, 1200, None),
        "q2": (2400, 100, None),
        "q3": (2300, None, 2000),
        "q4": (700, None, 650),
        "q5": (600, None, None),
        "q6": (30, None, None),
        "u1": (None, 4000, 45),
        "u2": (50, 45, None),
    }
    for order, (enqueued, allocated, released) in spread.items():
        await session.execute(
            text(
                "UPDATE allocation SET enqueued_at = coalesce(now() - make_interval(secs => :e), enqueued_at),"
                " allocated_at = coalesce(now() - make_interval(secs => :a), allocated_at),"
                " released_at = coalesce(now() - make_interval(secs => :r), released_at) WHERE order_id = :o"
            ),
            {"e": enqueued, "a": allocated, "r": released, "o": order},
        )
    await session.execute(
        text(
            "UPDATE wait_queue_entry w SET enqueued_at = a.enqueued_at FROM allocation a WHERE a.order_id = w.order_id"
        )
    )


async def test_queue_figures_match_the_rows(api: PoolApi, session: AsyncSession) -> None:
    await make_a_queue(api, session)
    until = datetime.now(UTC) + timedelta(seconds=60)
    since = until - timedelta(hours=3)
    tz = ZoneInfo("Asia/Kolkata")
    response = await api.queue_stats(
        since=since.isoformat(), until=until.isoformat(), tz="Asia/Kolkata", target_p90_wait_seconds=600
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["tz"] == "Asia/Kolkata"
    assert answer["target_p90_wait_seconds"] == 600
    currencies = {c["currency"]: c for c in answer["currencies"]}
    assert list(currencies) == ["BTC", "USDT"]
    rows = await queue_rows(session)

    assert_queue_figures_match_rows(currencies, rows, since=since, until=until, tz=tz)
    for figures in currencies.values():
        assert len(figures["hourly"]["arrivals"]) == 4  # three hours and a part

    # BTC by hand: q1 waited 1300 s, q2 2300 s; of q1..q6 two were cancelled while queued.
    btc = currencies["BTC"]
    assert (btc["wait"]["p50_seconds"], btc["wait"]["p99_seconds"]) == pytest.approx((1300, 2300), abs=1e-3)
    assert btc["abandonment"] == {
        "queued": 6,
        "handed_over": 2,
        "abandoned": 2,
        "still_waiting": 2,
        "rate": 0.3333,
    }
    # Capacity: in 3 h, 4 addresses handed out and 2 orders gave up; a1 held 1800 s, a2 2800 s.
    plan = btc["capacity"]
    arrival = 6 / (3 * 3600)
    holding = (1800 + 2800) / 2
    assert plan["method"] == "erlang_c"
    assert plan["arrival_rate_per_hour"] == pytest.approx(2.0)
    assert plan["mean_holding_seconds"] == pytest.approx(holding)
    assert plan["usable_wallets"] == 2
    load = arrival * holding
    needed = next(
        c
        for c in range(1, 100)
        if c > load and erlang_c_by_factorials(c, load) * math.exp(-(c / holding - arrival) * 600) <= 0.10
    )
    assert plan["offered_load"] == pytest.approx(load, abs=1e-4)
    assert (plan["recommended_wallets"], plan["shortfall"]) == (needed, max(needed - 2, 0))
    assert btc["networks"][0]["network"] == "bitcoin"
    assert btc["networks"][0]["capacity"]["p_wait_over_target"] == pytest.approx(
        erlang_c_by_factorials(2, load) * math.exp(-(2 / holding - arrival) * 600), abs=1e-4
    )
    # USDT: u1 held its wallet 3955 s; u2 waited 5 s.
    usdt = currencies["USDT"]
    assert usdt["networks"][0]["network"] == "TRC20"
    assert usdt["wait"]["p90_seconds"] == pytest.approx(5, abs=1e-3)
    assert usdt["capacity"]["mean_holding_seconds"] == pytest.approx(3955)


def expected_lines(node: Any, prefix: str) -> dict[str, str]:
    """The JSON's leaves as the CSV must name them: a list item by its first plain field."""
    if isinstance(node, list):
        found: dict[str, str] = {}
        for index, item in enumerate(node):
            if not isinstance(item, dict):
                found |= expected_lines(item, f"{prefix}[{index}]")
                continue
            name = next(k for k, v in item.items() if not isinstance(v, dict | list))
            label = "null" if item[name] is None else str(item[name])
            rest = {k: v for k, v in item.items() if k != name}
            found |= expected_lines(rest, f"{prefix}[{label}]")
        return found
    if isinstance(node, dict):
        return {
            path: value
            for key, child in node.items()
            for path, value in expected_lines(child, f"{prefix}.{key}" if prefix else key).items()
        }
    return {prefix: "" if node is None else str(node)}


async def test_csv_holds_what_json_holds(api: PoolApi, session: AsyncSession) -> None:
    await make_a_queue(api, session)
    until = datetime.now(UTC) + timedelta(seconds=60)
    params = {
        "since": (until - timedelta(days=1)).isoformat(),
        "until": until.isoformat(),
        "tz": "Europe/Berlin",
    }
    answer = (await api.queue_stats(**params)).json()
    response = await api.queue_stats(accept="text/csv", **params)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    assert lines[0] == ["figure", "value"]
    figures = dict(lines[1:])
    assert len(figures) == len(lines) - 1  # every path names one figure

    expected = expected_lines(answer, "")
    assert figures.keys() == expected.keys()
    different = {k for k in figures if figures[k] != expected[k]}
    assert different == {"generated_at"}  # the two answers were computed at two moments
    assert figures["currencies[BTC].abandonment.abandoned"] == "2"
    assert figures["currencies[BTC].networks[bitcoin].capacity.method"] == "erlang_c"
    assert "currencies[BTC].wait.histogram[null].count" in figures


async def test_bad_windows_and_time_zones_are_refused_naming_the_field(
    api: PoolApi, reader_api: PoolApi
) -> None:
    now = datetime.now(UTC)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"tz": "Mars/Olympus"}, "tz"),
        ({"days": 2, "since": (now - timedelta(days=1)).isoformat()}, "days"),
        ({"since": (now - timedelta(days=40)).isoformat()}, "since"),
        ({"since": now.isoformat(), "until": (now - timedelta(hours=1)).isoformat()}, "since"),
        ({"days": 0}, "days"),
        ({"target_p90_wait_seconds": 0}, "target_p90_wait_seconds"),
        ({"since": "2026-12-01T00:00:00"}, "since"),  # no offset
    ]
    for params, field in cases:
        response = await api.queue_stats(**params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text, (params, response.text)
    assert (await reader_api.queue_stats()).status_code == 200  # pool:read is enough
    assert (await api.client.get("/v1/stats/queue")).status_code == 401


async def test_order_apis_model_carries_every_figure(api: PoolApi, session: AsyncSession) -> None:
    """order-api proxies this answer through its own bounded model: nothing dropped, nothing refused."""
    client_models = pytest.importorskip("order_api.clients.wallet_pool")
    await make_a_queue(api, session)
    await api.stock("ETH", 1)
    await api.stock("USDT", 1, network="ERC20")
    response = await api.queue_stats(days=31, tz="America/New_York")
    # The longest window over four pools stays well inside what order-api reads of a peer's answer
    # (ORDER_API_WALLET_POOL__MAX_RESPONSE_BYTES, 64 KiB by default).
    assert len(response.content) < 32 * 1024
    answer = response.json()
    carried = client_models.QueueStats.model_validate(answer).model_dump(mode="json")
    assert carried == answer


async def test_the_queue_window_is_read_through_its_index(session: AsyncSession) -> None:
    """With many allocations, few of them queued, the orders that entered the queue in a day are found through
    ``ix_allocation_enqueued_at`` (the predicate of ``repository.queued_orders``), not a scan of the table."""
    await session.execute(
        text(
            "INSERT INTO allocation (order_id, currency, network, priority, status, requested_at, released_at,"
            " enqueued_at) SELECT 'bulk-' || g, 'BTC', 'bitcoin', 0, 'released', now() - g * interval '1 minute',"
            " now() - g * interval '1 minute', CASE WHEN g % 10 = 0 THEN now() - g * interval '1 minute' END"
            " FROM generate_series(1, 60000) AS g"
        )
    )
    await session.execute(text("ANALYZE allocation"))
    plan = await session.scalar(
        text(
            "EXPLAIN (FORMAT JSON) SELECT currency, network, enqueued_at, allocated_at, released_at FROM allocation"
            " WHERE enqueued_at >= now() - interval '1 day' AND enqueued_at < now()"
            " AND enqueued_at IS NOT NULL AND currency IS NOT NULL"
        )
    )
    assert "ix_allocation_enqueued_at" in str(plan), plan
    assert "Seq Scan" not in str(plan), plan
