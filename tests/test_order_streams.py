"""A customer follows a queued order live (``GET /v1/orders/{id}/events``) while order-api and wallet-pool run
as processes: another order's address comes back to the pool, the queued order gets it, and the stream says so
within a second; the orders queued behind hear that they moved up."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_services
from order_api.testing import order_body
from servicekit.testing import (
    EventStreamReader,
    ServiceProcess,
    event_receiver_stand_in,
    migrated_database,
    serve_stand_in,
)


@pytest.fixture
async def exits() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as stack:
        yield stack


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool") as url:
        yield Stack(database_url=url, logs=tmp_path)


def auth(order: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {order['session_token']}"}


@asynccontextmanager
async def order_stream(order_api: ServiceProcess, order: dict[str, Any]) -> AsyncIterator[EventStreamReader]:
    async with (
        httpx.AsyncClient(base_url=order_api.url, timeout=10) as client,
        client.stream("GET", f"/v1/orders/{order['id']}/events", headers=auth(order)) as response,
    ):
        assert response.status_code == 200, await response.aread()
        reader = EventStreamReader(response)
        try:
            yield reader
        finally:
            await reader.aclose()


async def test_a_queued_order_hears_of_its_address_within_a_second_of_another_orders_cancel(
    stack: Stack, services: list[ServiceProcess], exits: AsyncExitStack
) -> None:
    # The notifier's place is taken by a receiver that accepts every event, so the relays' passes carry no
    # failing deliveries: what is measured is the desk's own path from the cancel to the stream.
    notifier = await exits.enter_async_context(serve_stand_in(event_receiver_stand_in(lambda _e, _r: None)))
    wallet_pool = stack.wallet_pool(WALLET_POOL_NOTIFIER__URL=notifier)
    order_api = stack.order_api(ORDER_API_NOTIFIER__URL=notifier)
    await start_services(services, wallet_pool, order_api)
    addresses = await import_btc_wallets(wallet_pool, stack, 1)

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        created = []
        for n in range(3):
            response = await client.post("/v1/orders", json=order_body(customer_email(40 + n)))
            assert response.status_code == 201, response.text
            created.append(response.json())
        holder, first_queued, second_queued = created
        assert holder["deposit_address"] == addresses[0]
        assert [first_queued["queue_position"], second_queued["queue_position"]] == [1, 2]

        async with (
            order_stream(order_api, first_queued) as first,
            order_stream(order_api, second_queued) as second,
        ):
            now = await first.next()
            assert (now.event, now.json()["status"], now.json()["queue_position"]) == ("order", "queued", 1)
            assert (await second.next()).json()["queue_position"] == 2

            cancelled = await client.post(f"/v1/orders/{holder['id']}/cancel", headers=auth(holder))
            assert cancelled.status_code == 200, cancelled.text
            answered = time.monotonic()

            assigned = await first.next(within=5)
            took = time.monotonic() - answered
            assert assigned.event == "address_assigned"
            assert (assigned.json()["status"], assigned.json()["deposit_address"]) == (
                "awaiting_deposit",
                addresses[0],
            )
            assert took < 1.0, f"the stream heard of the address {took:.3f} s after the cancel was answered"

            moved = await second.next(within=5)
            assert (moved.event, moved.json()["status"], moved.json()["queue_position"]) == (
                "queue_position",
                "queued",
                1,
            )

            # A queued order ahead leaves the queue by its own cancel: wallet-pool's queue moves a relay hop
            # after order-api's, and the order behind hears of its new place all the same, within a second.
            response = await client.post("/v1/orders", json=order_body(customer_email(43)))
            third_queued = response.json()
            assert (third_queued["status"], third_queued["queue_position"]) == ("queued", 2)
            async with order_stream(order_api, third_queued) as third:
                assert (await third.next()).json()["queue_position"] == 2
                cancelled = await client.post(
                    f"/v1/orders/{second_queued['id']}/cancel", headers=auth(second_queued)
                )
                assert cancelled.status_code == 200, cancelled.text
                answered = time.monotonic()
                assert (await second.next()).json()["status"] == "cancelled"
                moved_up = await third.next(within=5)
                took = time.monotonic() - answered
                assert (moved_up.event, moved_up.json()["queue_position"]) == ("queue_position", 1)
                assert took < 1.5, f"the order behind heard of its new place {took:.3f} s after the cancel"


async def test_a_replica_told_to_stop_ends_its_open_streams_at_once_and_exits(
    stack: Stack, services: list[ServiceProcess], exits: AsyncExitStack
) -> None:
    """A rollout sends SIGTERM: uvicorn waits for every open response to end, and a stream waiting for news
    never would. The replica ends its streams at once (the browser reconnects, to another replica) and exits
    well within Kubernetes' grace period, instead of being killed at its end."""
    notifier = await exits.enter_async_context(serve_stand_in(event_receiver_stand_in(lambda _e, _r: None)))
    wallet_pool = stack.wallet_pool(WALLET_POOL_NOTIFIER__URL=notifier)
    order_api = stack.order_api(ORDER_API_NOTIFIER__URL=notifier, ORDER_API_STREAM_HEARTBEAT_SECONDS="60")
    await start_services(services, wallet_pool, order_api)
    await import_btc_wallets(wallet_pool, stack, 1)
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        response = await client.post("/v1/orders", json=order_body(customer_email(50)))
        assert response.status_code == 201, response.text
        order = response.json()
    async with order_stream(order_api, order) as stream:
        assert (await stream.next()).event == "order"
        assert order_api.process is not None
        order_api.process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        with pytest.raises(EOFError):
            await stream.next(within=5)  # ended, not a heartbeat a minute later
    await asyncio.to_thread(order_api.process.wait, 10)
    assert time.monotonic() - stopping < 10
    assert order_api.process.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert "service stopped" in [r.get("event") for r in order_api.log_records()]  # a graceful shutdown
