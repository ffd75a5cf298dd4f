"""Order intake across order-api and wallet-pool, as a frontend does it, with the services as processes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_intake
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def test_a_released_address_goes_to_the_queued_order(
    stack: Stack, services: list[ServiceProcess]
) -> None:
    wallet_pool, order_api = await start_intake(stack, services)
    addresses = await import_btc_wallets(wallet_pool, stack, 2)

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        created = []
        for n in range(3):
            response = await client.post("/v1/orders", json=order_body(customer_email(n)))
            assert response.status_code == 201, response.text
            created.append(response.json())
        first, second, third = created
        assert first["status"] == second["status"] == "awaiting_deposit"
        assert {first["deposit_address"], second["deposit_address"]} == set(addresses)
        assert third["status"] == "queued"
        assert third["deposit_address"] is None
        assert third["queue_position"] == 1

        cancelled = await client.post(
            f"/v1/orders/{first['id']}/cancel", headers={"Authorization": f"Bearer {first['session_token']}"}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"

        async def third_order() -> dict[str, Any]:
            response = await client.get(
                f"/v1/orders/{third['id']}", headers={"Authorization": f"Bearer {third['session_token']}"}
            )
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        served = await eventually(
            third_order,
            until=lambda o: o["status"] == "awaiting_deposit",
            within=3.0,
            message="the queued order gets the released address",
        )
        assert served["deposit_address"] == first["deposit_address"]
        assert served["queue_position"] is None

        # Another customer's session cannot see that order: it is not found, not forbidden.
        other = await client.get(
            f"/v1/orders/{third['id']}", headers={"Authorization": f"Bearer {second['session_token']}"}
        )
        assert other.status_code == 404


async def test_orders_accepted_while_wallet_pool_is_down_get_addresses_when_it_returns(
    stack: Stack, services: list[ServiceProcess]
) -> None:
    wallet_pool, order_api = await start_intake(stack, services)
    addresses = await import_btc_wallets(wallet_pool, stack, 2)
    await wallet_pool.stop()

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        accepted = []
        for n in range(3):
            response = await client.post("/v1/orders", json=order_body(customer_email(10 + n)))
            assert response.status_code == 201, response.text
            body = response.json()
            assert body["status"] == "awaiting_address"
            assert body["queue_position"] is None
            accepted.append(body)

        await wallet_pool.start()

        async def states() -> list[dict[str, Any]]:
            found = []
            for order in accepted:
                response = await client.get(
                    f"/v1/orders/{order['id']}", headers={"Authorization": f"Bearer {order['session_token']}"}
                )
                found.append(response.json())
            return found

        settled = await eventually(
            states,
            until=lambda found: (
                sum(o["status"] == "awaiting_deposit" for o in found) == 2
                and sum(o["status"] == "queued" and o["queue_position"] == 1 for o in found) == 1
            ),
            within=20.0,
            message="every order accepted during the outage gets an address or a queue place",
        )
    assert {o["deposit_address"] for o in settled if o["deposit_address"]} == set(addresses)
