"""The operator workflow across order-api and wallet-pool, as an operator works, with the services as
processes: an admin creates the operator; the operator lists, takes and completes an order; its deposit
address goes back to the pool and on to the oldest queued order of that currency — also when wallet-pool is
down at the moment the order is completed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from order_api.testing import completion_body, order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool") as url:
        yield Stack(database_url=url, logs=tmp_path)


@dataclass
class Desk:
    """Both services running, two BTC addresses in the pool, three customers' orders (the third queued)
    and an operator an admin has just created."""

    wallet_pool: ServiceProcess
    client: httpx.AsyncClient
    orders: list[dict[str, Any]]
    operator: dict[str, str]


@pytest.fixture
async def desk(stack: Stack, services: list[ServiceProcess]) -> AsyncIterator[Desk]:
    wallet_pool, order_api = stack.wallet_pool(), stack.order_api()
    services.extend([wallet_pool, order_api])
    await wallet_pool.start()
    await order_api.start()
    await import_btc_wallets(wallet_pool, stack, 2)
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        orders = []
        for n in range(3):
            response = await client.post("/v1/orders", json=order_body(customer_email(n)))
            assert response.status_code == 201, response.text
            orders.append(response.json())
        assert [o["status"] for o in orders] == ["awaiting_deposit", "awaiting_deposit", "queued"]
        created = await client.post(
            "/v1/admin/operators",
            json={"name": "Olga", "role": "operator"},
            headers={"Authorization": f"Bearer {stack.keys.admin}"},
        )
        assert created.status_code == 201, created.text
        operator = {"Authorization": f"Bearer {created.json()['token']}"}
        yield Desk(wallet_pool=wallet_pool, client=client, orders=orders, operator=operator)


async def served(client: httpx.AsyncClient, order: dict[str, Any], *, within: float) -> dict[str, Any]:
    """The queued order as its customer sees it, once it has been given an address."""

    async def read() -> dict[str, Any]:
        response = await client.get(
            f"/v1/orders/{order['id']}", headers={"Authorization": f"Bearer {order['session_token']}"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    return await eventually(
        read,
        until=lambda o: o["status"] == "awaiting_deposit",
        within=within,
        message="the queued order gets the released address",
    )


async def test_an_operator_completes_an_order_and_its_address_serves_the_queue(desk: Desk) -> None:
    client, operator = desk.client, desk.operator
    first, second, third = desk.orders
    listed = await client.get("/v1/operator/orders", params={"currency": "BTC"}, headers=operator)
    assert listed.status_code == 200, listed.text
    assert [o["id"] for o in listed.json()["items"]] == [first["id"], second["id"]]  # oldest first

    taken = await client.post(f"/v1/operator/orders/{first['id']}/take", headers=operator)
    assert taken.status_code == 200, taken.text
    completed = await client.post(
        f"/v1/operator/orders/{first['id']}/status",
        json=completion_body(first, comment="Paid out"),
        headers={**operator, "If-Match": str(taken.json()["version"])},
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "completed"

    now_served = await served(client, third, within=5.0)
    assert now_served["deposit_address"] == first["deposit_address"]
    assert now_served["queue_position"] is None
    detail = await client.get(f"/v1/operator/orders/{third['id']}", headers=operator)
    assert [h["order_id"] for h in detail.json()["address_history"]] == [first["id"]]


async def test_a_status_change_succeeds_while_wallet_pool_is_down_and_the_release_lands_later(
    desk: Desk,
) -> None:
    client, operator = desk.client, desk.operator
    first, _, third = desk.orders
    taken = await client.post(f"/v1/operator/orders/{first['id']}/take", headers=operator)
    assert taken.status_code == 200, taken.text

    await desk.wallet_pool.stop()
    completed = await client.post(
        f"/v1/operator/orders/{first['id']}/status", json=completion_body(first), headers=operator
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "completed"
    mine = await client.get("/v1/operator/orders/mine", params={"status": "completed"}, headers=operator)
    assert [o["id"] for o in mine.json()["items"]] == [first["id"]]

    await desk.wallet_pool.start()
    now_served = await served(client, third, within=20.0)
    assert now_served["deposit_address"] == first["deposit_address"]


async def test_staff_read_the_pool_as_wallet_pool_computes_it(desk: Desk) -> None:
    """An operator watching a draining pool sees what wallet-pool sees: levels, the queue, the recent
    allocation rate and when the free addresses run out, per currency and network, and the queue's analytics.
    A personal token on a route only services' keys reach is told so, not called an unknown key."""
    pool = await desk.client.get("/v1/stats/pool", headers=desk.operator)
    assert pool.status_code == 200, pool.text
    [btc] = [c for c in pool.json()["currencies"] if c["currency"] == "BTC"]
    assert (btc["total"], btc["free"], btc["reserved"], btc["queue_length"]) == (2, 0, 2, 1)
    assert btc["allocations_in_window"] == 2
    assert btc["oldest_wait_seconds"] is not None
    assert [(n["network"], n["reserved"], n["queue_length"]) for n in btc["networks"]] == [("bitcoin", 2, 1)]
    assert pool.json()["window_seconds"] > 0

    # ... and the queue's analytics: the third order entered the queue and still waits; two wallets are usable.
    queue = await desk.client.get("/v1/stats/queue", params={"tz": "Europe/Berlin"}, headers=desk.operator)
    assert queue.status_code == 200, queue.text
    [btc_queue] = [c for c in queue.json()["currencies"] if c["currency"] == "BTC"]
    assert btc_queue["abandonment"] == {
        "queued": 1,
        "handed_over": 0,
        "abandoned": 0,
        "still_waiting": 1,
        "rate": 0.0,
    }
    assert (btc_queue["capacity"]["method"], btc_queue["capacity"]["usable_wallets"]) == ("erlang_c", 2)
    assert sum(btc_queue["peak_hours"]["arrivals_by_hour_of_day"]) == 1

    internal = await desk.client.post("/v1/events", json={}, headers=desk.operator)
    assert internal.status_code == 403, internal.text
    assert internal.json()["code"] == "api_key_required"
    assert "personal token" in internal.json()["detail"]
