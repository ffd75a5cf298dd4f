"""order-api and wallet-pool as processes on PostgreSQL and a Redis of the test's own. Their database
connections terminated (``pg_terminate_backend``) again and again while customers create and read orders:
every answer is a success or ``503`` with ``Retry-After`` (never a bare ``500``), and the services serve as
before once it stops, with no connection reused while an operation on it was still in flight. A burst queues
for Redis connections; with Redis gone, orders are still taken (their rate limit fails open) while email
codes are refused (theirs fails closed)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from order_api.testing import order_body
from servicekit.testing import (
    PrivateRedis,
    ServiceProcess,
    eventually,
    migrated_database,
    terminate_connections,
)

CUSTOMERS = 6
TERMINATIONS = 4
MISUSE = ("another operation is in progress", "InternalClientError", "unhandled error")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def test_terminated_database_connections_cost_a_503_at_most_and_nothing_after(
    stack: Stack, services: list[ServiceProcess]
) -> None:
    assert stack.database_url is not None
    wallet_pool = stack.wallet_pool()
    order_api = stack.order_api(
        ORDER_API_ORDER_RATE_LIMIT="100000/minute", ORDER_API_MAX_OPEN_ORDERS_PER_IP="100000"
    )
    services.extend([wallet_pool, order_api])
    await wallet_pool.start()
    await order_api.start()
    await import_btc_wallets(wallet_pool, stack, 30)

    numbers = itertools.count(1)
    answers: list[httpx.Response] = []
    stop = asyncio.Event()

    async def customer(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            created = await client.post("/v1/orders", json=order_body(customer_email(next(numbers))))
            answers.append(created)
            if created.status_code == 201:
                order = created.json()
                token = {"Authorization": f"Bearer {order['session_token']}"}
                answers.append(await client.get(f"/v1/orders/{order['id']}", headers=token))

    async def answered(count: int, *, since: int) -> None:
        """Wait until ``count`` more answers than ``since`` have come."""

        async def more() -> int:
            return len(answers) - since

        await eventually(more, until=lambda n: n >= count, within=60, message="requests are answered")

    async with httpx.AsyncClient(base_url=order_api.url, timeout=30.0) as client:
        load = [asyncio.create_task(customer(client)) for _ in range(CUSTOMERS)]
        try:
            for _ in range(TERMINATIONS):
                await answered(20, since=len(answers))
                assert await terminate_connections(stack.database_url) >= 1
            await answered(20, since=len(answers))
        finally:
            stop.set()
            await asyncio.gather(*load)

        statuses = {a.status_code for a in answers}
        assert statuses <= {200, 201, 503}, [
            (a.status_code, a.text) for a in answers if a.status_code not in (200, 201, 503)
        ]
        for refused in (a for a in answers if a.status_code == 503):
            assert int(refused.headers["Retry-After"]) >= 1, refused.text
        assert answers[-1].status_code in (200, 201)

        after = [
            await client.post("/v1/orders", json=order_body(customer_email(next(numbers)))) for _ in range(3)
        ]
        assert [a.status_code for a in after] == [201, 201, 201], [a.text for a in after]

    for service in (order_api, wallet_pool):
        log = service.log_text()
        assert not [line for line in log.splitlines() if any(word in line for word in MISUSE)], service.app


async def test_a_burst_queues_for_redis_and_without_redis_orders_are_taken_but_email_codes_refused(
    stack: Stack, services: list[ServiceProcess], private_redis: PrivateRedis
) -> None:
    wallet_pool = stack.wallet_pool()
    order_api = stack.order_api(
        ORDER_API_REDIS_URL=private_redis.url,
        ORDER_API_REDIS_MAX_CONNECTIONS="3",  # far fewer than the burst
        ORDER_API_ORDER_RATE_LIMIT="100000/minute",
        ORDER_API_MAX_OPEN_ORDERS_PER_IP="100000",
        ORDER_API_METRICS_ACCESS="public",
    )
    services.extend([wallet_pool, order_api])
    await wallet_pool.start()
    await order_api.start()
    await import_btc_wallets(wallet_pool, stack, 10)

    async with httpx.AsyncClient(base_url=order_api.url, timeout=30.0) as client:
        burst = await asyncio.gather(
            *(client.post("/v1/orders", json=order_body(customer_email(n))) for n in range(50))
        )
        assert {a.status_code for a in burst} == {201}, {a.text for a in burst if a.status_code != 201}

        await private_redis.kill()
        order = await client.post("/v1/orders", json=order_body(customer_email(1000)))
        code = await client.post("/v1/auth/email-code", json={"email": "customer1@example.com"})
        assert order.status_code == 201, order.text
        assert code.status_code == 503, code.text
        assert code.json()["code"] == "backing_store_unavailable"
        assert int(code.headers["Retry-After"]) >= 1
        metrics = (await client.get("/metrics")).text
        assert 'ratelimit_fail_open_total{limit="orders:create"} 1.0' in metrics

        await private_redis.start()
        again = await eventually(
            lambda: client.post("/v1/auth/email-code", json={"email": "customer1@example.com"}),
            until=lambda r: r.status_code == 202,
            message="email codes are sent again once Redis is back",
        )
        assert again.json()["expires_in_seconds"] > 0
    assert "Too many connections" not in order_api.log_text()
