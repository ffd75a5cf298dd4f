"""Concurrency: many clients at once, each in its own transaction, committing for real (PostgreSQL).

Driven through the service functions, one session and connection per request, so the database is what
arbitrates (the HTTP stack adds nothing to the race; the last test races it too, across two processes).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from servicekit.db import Database
from servicekit.testing import ServiceProcess
from wallet_pool.allocations.errors import AllocationClosedError
from wallet_pool.allocations.models import Priority
from wallet_pool.allocations.schemas import (
    AllocationAllocatedRead,
    AllocationQueuedRead,
    AllocationReleaseRead,
)
from wallet_pool.allocations.service import allocate_wallet, allocation_of, release_allocation
from wallet_pool.settings import Settings
from wallet_pool.testing import KEYS, PoolApi, addresses, assert_pool_invariants, make_settings
from wallet_pool.wallets.service import disable_wallet, enable_wallet, import_wallets

Answer = AllocationAllocatedRead | AllocationQueuedRead


@dataclass
class Desk:
    """The service functions, each call in a transaction of its own."""

    database: Database
    settings: Settings

    async def stock(self, currency: str, network: str, count: int, *, start: int = 1) -> list[int]:
        async with self.database.sessionmaker.begin() as session:
            result = await import_wallets(
                session=session,
                settings=self.settings,
                currency=currency,
                network=network,
                addresses=addresses(currency, network, count, start=start),
            )
        return [w.id for w in result.wallets]

    async def allocate(
        self, order_id: str, currency: str = "BTC", priority: Priority = Priority.NORMAL
    ) -> Answer:
        async with self.database.sessionmaker.begin() as session:
            return await allocate_wallet(
                session=session,
                settings=self.settings,
                order_id=order_id,
                currency=currency,
                network=None,
                priority=priority,
            )

    async def release(self, order_id: str) -> AllocationReleaseRead:
        async with self.database.sessionmaker.begin() as session:
            return await release_allocation(session=session, settings=self.settings, order_id=order_id)

    async def disable(self, wallet_id: int) -> None:
        async with self.database.sessionmaker.begin() as session:
            await disable_wallet(session=session, wallet_id=wallet_id)

    async def enable(self, wallet_id: int) -> None:
        async with self.database.sessionmaker.begin() as session:
            await enable_wallet(session=session, settings=self.settings, wallet_id=wallet_id)

    async def positions(self, order_ids: list[str]) -> list[int | None]:
        """Each order's queue position, as ``GET /v1/allocations/{order_id}`` answers it."""
        found: list[int | None] = []
        async with self.database.sessionmaker() as session:
            for order_id in order_ids:
                answer = await allocation_of(session=session, settings=self.settings, order_id=order_id)
                found.append(answer.position if isinstance(answer, AllocationQueuedRead) else None)
        return found

    async def check_invariants(self) -> None:
        async with self.database.sessionmaker() as session:
            await assert_pool_invariants(session)

    async def queue_in_serving_order(self) -> list[str]:
        async with self.database.sessionmaker() as session:
            rows = await session.execute(
                text("SELECT order_id FROM wait_queue_entry ORDER BY priority DESC, enqueued_at, id")
            )
            return list(rows.scalars())


class RetryingTransport(httpx.AsyncBaseTransport):
    """Retries a request whose connection failed, as order-api's client (servicekit's) does for these calls:
    allocation and release are idempotent per order, so a retry can only get the same answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, attempts: int = 3) -> None:
        self.inner = inner
        self.attempts = attempts
        self.retried = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.inner.handle_async_request(request)
            except httpx.TransportError:
                if attempt == self.attempts:
                    raise
                self.retried += 1
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.inner.aclose()


def desk(database: Database, race_database_url: str) -> Desk:
    return Desk(database, make_settings(race_database_url))


async def test_200_orders_at_once_for_50_wallets(race_database: Database, race_database_url: str) -> None:
    pool = desk(race_database, race_database_url)
    await pool.stock("BTC", "bitcoin", 50)
    rng = random.Random(200)
    priorities = {f"order-{i:03}": rng.choice(list(Priority)) for i in range(200)}

    answers = await asyncio.gather(*(pool.allocate(order, priority=p) for order, p in priorities.items()))

    allocated = [a for a in answers if isinstance(a, AllocationAllocatedRead)]
    queued = [a for a in answers if isinstance(a, AllocationQueuedRead)]
    assert len(allocated) == 50
    assert len({a.address for a in allocated}) == 50
    assert len(queued) == 150
    in_line = await pool.queue_in_serving_order()
    assert sorted(in_line) == sorted(a.order_id for a in queued)
    assert await pool.positions(in_line) == list(range(1, 151))
    ranks = [int(priorities[order]) for order in in_line]
    assert ranks == sorted(ranks, reverse=True)
    await pool.check_invariants()

    # Releasing ten hands their wallets to the first ten in line, in order.
    handed = [(await pool.release(a.order_id)).handed_to_order_id for a in allocated[:10]]
    assert handed == in_line[:10]
    await pool.check_invariants()


async def test_the_same_order_asked_for_many_times_at_once_gets_one_wallet(
    race_database: Database, race_database_url: str
) -> None:
    pool = desk(race_database, race_database_url)
    await pool.stock("BTC", "bitcoin", 5)
    orders = [f"dup-{i}" for i in range(10)]
    requests = [order for order in orders for _ in range(10)]
    random.Random(10).shuffle(requests)

    answers = await asyncio.gather(*(pool.allocate(order) for order in requests))

    addresses: dict[str, set[str]] = defaultdict(set)
    places: dict[str, set[str]] = defaultdict(set)
    for answer in answers:
        if isinstance(answer, AllocationAllocatedRead):
            addresses[answer.order_id].add(answer.address)
        else:
            places[answer.order_id].add(str(answer.enqueued_at))
    # One wallet per order, and one place in the queue: an order may be answered "queued" and then, once the
    # queue sweeper hands it a wallet another request held for a moment and let go, its address.
    assert all(len(seen) == 1 for seen in addresses.values()), addresses
    assert all(len(seen) == 1 for seen in places.values()), places
    assert len({address for seen in addresses.values() for address in seen}) == len(addresses)
    async with race_database.sessionmaker() as session:
        counts = await session.execute(text("SELECT status, count(*) FROM allocation GROUP BY status"))
        assert dict(counts.tuples().all()) == {"allocated": 5, "queued": 5}
        held = await session.execute(text("SELECT order_id FROM allocation WHERE status = 'allocated'"))
        assert set(addresses) <= set(held.scalars().all())  # an order once answered an address keeps it
    await pool.check_invariants()


async def test_random_interleavings_keep_every_invariant(
    race_database: Database, race_database_url: str
) -> None:
    """A few hundred allocations, repeats, releases (of allocated, queued, released and unknown orders),
    disables and enables, all at once with random start times; then every invariant, checked in SQL."""
    pool = desk(race_database, race_database_url)
    btc = await pool.stock("BTC", "bitcoin", 8)
    trc = await pool.stock("USDT", "TRC20", 4)
    rng = random.Random(20261121)
    orders = {f"r-{i:02}": rng.choice(["BTC", "BTC", "USDT"]) for i in range(60)}
    ops: list[tuple[str, Any]] = []
    for _ in range(260):
        roll = rng.random()
        if roll < 0.5:
            ops.append(("allocate", rng.choice(list(orders))))
        elif roll < 0.88:
            ops.append(("release", rng.choice([*orders, "ghost-1", "ghost-2"])))
        elif roll < 0.94:
            ops.append(("disable", rng.choice(btc + trc)))
        else:
            ops.append(("enable", rng.choice(btc + trc)))
    outcomes: Counter[str] = Counter()
    addresses_of: dict[str, set[str]] = defaultdict(set)

    async def run(kind: str, subject: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            if kind == "allocate":
                answer = await pool.allocate(subject, orders[subject], rng.choice(list(Priority)))
                if isinstance(answer, AllocationAllocatedRead):
                    addresses_of[subject].add(answer.address)
                outcomes[answer.status] += 1
            elif kind == "release":
                released = await pool.release(subject)
                if released.address:
                    addresses_of[subject].add(released.address)
                if released.handed_to_order_id:
                    outcomes["handed"] += 1
                outcomes["released"] += 1
            elif kind == "disable":
                await pool.disable(subject)
            else:
                await pool.enable(subject)
        except AllocationClosedError:
            outcomes["closed"] += 1

    await asyncio.gather(*(run(kind, subject, rng.uniform(0, 0.4)) for kind, subject in ops))

    assert all(len(seen) == 1 for seen in addresses_of.values()), "an order saw two addresses"
    assert all(outcomes[seen] for seen in ("allocated", "queued", "handed", "closed")), outcomes
    await pool.check_invariants()
    for subject in btc + trc:  # whatever was disabled comes back and serves the queues
        await pool.enable(subject)
    await pool.check_invariants()


async def test_the_full_stack_races_over_http(
    race_database: Database, race_database_url: str, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    """The same races through uvicorn, FastAPI, the request session and the outbox: a real process."""
    env = {
        "WALLET_POOL_DATABASE_URL": race_database_url,
        "WALLET_POOL_API_KEYS": "[" + ",".join(e.model_dump_json() for e in KEYS.entries()) + "]",
        "WALLET_POOL_ORDER_API__URL": make_settings(None).order_api.url,
        "WALLET_POOL_DATABASE_POOL_SIZE": "10",
        "WALLET_POOL_LOG_LEVEL": "WARNING",
        "WALLET_POOL_TRACE_DATABASE": "false",
    }
    process = ServiceProcess(
        app="wallet_pool.main:create_app", env=env, log_path=tmp_path / "wallet-pool.log"
    )
    services.append(process)
    await process.start(ready_within=60)
    async with httpx.AsyncClient(
        base_url=process.url, limits=httpx.Limits(max_connections=100), timeout=30
    ) as client:
        api = PoolApi(client)
        assert (await api.stock("BTC", 30)) == list(range(1, 31))
        rng = random.Random(2)
        priorities = ["normal", "priority", "vip"]
        first = await asyncio.gather(
            *(api.allocate(f"h-{i:03}", priority=rng.choice(priorities)) for i in range(120)),
            *(api.allocate(f"h-{i:03}") for i in range(0, 120, 10)),  # the same orders again, at once
        )
        assert Counter(r.status_code for r in first[:120]) == {201: 30, 202: 90}
        holders = [r.json()["order_id"] for r in first[:120] if r.status_code == 201]
        second = await asyncio.gather(
            *(api.release(order) for order in holders),
            *(api.release(f"h-{i:03}") for i in range(0, 120, 7)),  # some twice, some queued
            *(api.allocate(f"late-{i:03}") for i in range(40)),
        )
        assert all(r.status_code in (200, 201, 202, 409) for r in second), [r.text for r in second]
        assert {r.status_code for r in second[: len(holders)]} == {200}
        handed = [r.json()["handed_to_order_id"] for r in second[: len(holders)]]
        assert all(handed)
        assert len(set(handed)) == len(handed)

    async with race_database.sessionmaker() as session:
        await assert_pool_invariants(session)
        reserved = (
            await session.execute(text("SELECT count(*) FROM wallet WHERE status = 'reserved'"))
        ).scalar()
        assert reserved == 30  # the queue was long enough to take every wallet back at once
    assert not [r for r in process.log_records() if r.get("level") == "ERROR"]
