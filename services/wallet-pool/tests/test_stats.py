"""Pool statistics and the pool gauges."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from servicekit.db import Database, utcnow
from servicekit.testing import eventually, metric_samples, running_app
from wallet_pool.allocations.models import wait_queue_table
from wallet_pool.main import create_app
from wallet_pool.testing import PoolApi, RunningApp, make_settings


def by_currency(stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["currency"]: c for c in stats["currencies"]}


async def test_stats_of_an_empty_pool(api: PoolApi) -> None:
    response = await api.stats()
    assert response.status_code == 200
    assert response.json()["currencies"] == []
    assert response.json()["window_seconds"] == 3600


async def test_stats_per_currency_and_network(pool_app: RunningApp, api: PoolApi) -> None:
    btc = await api.stock("BTC", 4)
    await api.stock("USDT", 2, network="TRC20")
    await api.stock("USDT", 1, network="ERC20")
    await api.disable(btc[3])
    for order in ("b1", "b2", "b3"):
        assert (await api.allocate(order)).status_code == 201
    await api.release("b1")
    await api.allocate("b4")  # takes the released wallet (no cool-down for BTC)
    for order, priority in (("b5", "normal"), ("b6", "vip")):
        assert (await api.allocate(order, priority=priority)).status_code == 202
    await api.allocate("t1", "USDT")

    stats = (await api.stats()).json()
    currencies = by_currency(stats)
    assert list(currencies) == ["BTC", "USDT"]
    window = pool_app.settings.stats_window_seconds
    b = currencies["BTC"]
    assert {k: b[k] for k in ("total", "free", "reserved", "disabled", "queue_length")} == {
        "total": 4,
        "free": 0,
        "reserved": 3,
        "disabled": 1,
        "queue_length": 2,
    }
    assert (b["allocations_in_window"], b["releases_in_window"]) == (4, 1)
    assert b["free_exhausted_in_seconds"] == 0.0  # draining, nothing left
    assert 0 <= b["average_wait_seconds"] <= b["oldest_wait_seconds"] < 60
    assert [n["network"] for n in b["networks"]] == ["bitcoin"]
    assert b["networks"][0]["queue_length"] == 2

    u = currencies["USDT"]
    assert (u["total"], u["free"], u["reserved"], u["queue_length"]) == (3, 2, 1, 0)
    assert (u["oldest_wait_seconds"], u["average_wait_seconds"]) == (None, None)
    networks = {n["network"]: n for n in u["networks"]}
    assert (networks["TRC20"]["free"], networks["TRC20"]["reserved"], networks["ERC20"]["free"]) == (1, 1, 1)
    # One net allocation in the window: one free TRC20 wallet lasts one window at that rate.
    assert networks["TRC20"]["free_exhausted_in_seconds"] == float(window)
    assert networks["ERC20"]["free_exhausted_in_seconds"] is None  # not draining

    # The gauges were refreshed by the same computation.
    page = (await api.client.get("/metrics")).text
    assert 'wallet_pool_queue_length{currency="BTC",network="bitcoin"} 2.0' in page
    assert 'wallet_pool_free_wallets{currency="USDT",network="TRC20"} 1.0' in page
    assert 'wallet_pool_free_wallets{currency="ETH",network="ethereum"} 0.0' in page


async def test_the_stats_stay_readable_by_order_apis_client_model(api: PoolApi) -> None:
    """order-api parses GET /v1/stats with its own model; only fields were added."""
    client_models = pytest.importorskip("order_api.clients.wallet_pool")
    PoolStats = client_models.PoolStats

    await api.stock("BTC", 1)
    await api.allocate("o1")
    await api.allocate("o2")
    stats = PoolStats.model_validate((await api.stats()).json())
    (btc,) = stats.currencies
    assert (btc.currency, btc.total, btc.reserved, btc.queue_length) == ("BTC", 1, 1, 1)
    assert btc.oldest_wait_seconds is not None


async def test_stats_need_the_scope(api: PoolApi) -> None:
    assert (await api.client.get("/v1/stats")).status_code == 401


async def test_the_oldest_wait_gauge_is_read_when_scraped(
    race_database: Database, race_database_url: str
) -> None:
    """``wallet_pool_queue_oldest_wait_seconds`` (what the Prometheus queue-wait rule watches) follows the order
    first in line of each pool, from committed rows (its own database), and drops to 0 once it is served."""
    async with running_app(create_app(make_settings(race_database_url))) as client:
        api = PoolApi(client)
        await api.stock("BTC", 1)
        assert (await api.allocate("held")).status_code == 201
        assert (await api.allocate("waiting")).status_code == 202
        async with race_database.sessionmaker.begin() as session:
            await session.execute(
                update(wait_queue_table)
                .where(wait_queue_table.c.order_id == "waiting")
                .values(enqueued_at=utcnow() - timedelta(hours=2))
            )

        async def oldest() -> dict[str, float]:
            samples = metric_samples((await client.get("/metrics")).text)
            return {k: v for k, v in samples.items() if k.startswith("wallet_pool_queue_oldest_wait_seconds")}

        waited = await eventually(
            oldest,
            until=lambda f: f['wallet_pool_queue_oldest_wait_seconds{currency="BTC",network="bitcoin"}'] > 0,
            within=10.0,
            message="the waiting order is read",
        )
        assert (
            7200 <= waited['wallet_pool_queue_oldest_wait_seconds{currency="BTC",network="bitcoin"}'] < 7300
        )
        assert waited['wallet_pool_queue_oldest_wait_seconds{currency="ETH",network="ethereum"}'] == 0
        assert (await api.release("held")).status_code == 200  # its wallet goes to the waiting order
        await eventually(
            oldest,
            until=lambda f: f['wallet_pool_queue_oldest_wait_seconds{currency="BTC",network="bitcoin"}'] == 0,
            within=10.0,
            message="the served order no longer waits",
        )
