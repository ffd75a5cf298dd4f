"""The common allocation in one statement (``repository.allocate_free_wallet_at_once``), on PostgreSQL.

It may only act for a new order, a free wallet and nobody waiting; anything else must leave the database
exactly as it was, so that ``allocate_wallet`` can fall back to its general path, which answers the case
correctly. Committed for real in the race database (the statement runs on a pooled connection of its own,
outside any session transaction).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from servicekit.db import Database, utcnow
from wallet_pool.allocations import repository
from wallet_pool.allocations.errors import AllocationClosedError
from wallet_pool.allocations.models import Priority
from wallet_pool.allocations.schemas import AllocationAllocatedRead, AllocationQueuedRead
from wallet_pool.allocations.service import allocate_wallet, release_allocation
from wallet_pool.pools import Pool
from wallet_pool.settings import Settings
from wallet_pool.testing import addresses, assert_pool_invariants, make_settings
from wallet_pool.wallets.repository import ReservedWallet
from wallet_pool.wallets.service import import_wallets

BTC = Pool("BTC", "bitcoin")
Answer = AllocationAllocatedRead | AllocationQueuedRead


@dataclass
class Pools:
    """wallet-pool's functions, each call in a transaction of its own, on the race database."""

    database: Database
    settings: Settings

    async def stock(self, count: int, *, start: int = 1) -> list[str]:
        async with self.database.sessionmaker.begin() as session:
            await import_wallets(
                session=session,
                settings=self.settings,
                currency="BTC",
                network="bitcoin",
                addresses=addresses("BTC", "bitcoin", count, start=start),
            )
        return addresses("BTC", "bitcoin", count, start=start)

    async def at_once(
        self, order_id: str, *, priority: Priority = Priority.NORMAL, rested_before: datetime | None = None
    ) -> ReservedWallet | None:
        """The one statement alone, as ``allocate_wallet`` runs it first."""
        now = utcnow()
        async with self.database.sessionmaker() as session:
            return await repository.allocate_free_wallet_at_once(
                session,
                order_id=order_id,
                pool=BTC,
                priority=priority,
                now=now,
                rested_before=rested_before or now,
            )

    async def allocate(self, order_id: str, *, priority: Priority = Priority.NORMAL) -> Answer:
        async with self.database.sessionmaker.begin() as session:
            return await allocate_wallet(
                session=session,
                settings=self.settings,
                order_id=order_id,
                currency="BTC",
                network=None,
                priority=priority,
            )

    async def release(self, order_id: str) -> None:
        async with self.database.sessionmaker.begin() as session:
            await release_allocation(session=session, settings=self.settings, order_id=order_id)

    async def state(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row an allocation can touch, in a stable order."""
        queries = {
            "wallet": "SELECT id, status, order_id, reserved_at, released_at, allocation_count FROM wallet",
            "allocation": "SELECT order_id, status, wallet_id, address, priority, requested_at FROM allocation",
            "wait_queue_entry": "SELECT order_id, priority, enqueued_at FROM wait_queue_entry",
        }
        async with self.database.sessionmaker() as session:
            return {
                table: sorted(tuple(row) for row in await session.execute(text(sql)))
                for table, sql in queries.items()
            }

    async def check_invariants(self) -> None:
        async with self.database.sessionmaker() as session:
            await assert_pool_invariants(session)


@pytest.fixture
def pools(race_database: Database, race_database_url: str) -> Pools:
    return Pools(race_database, make_settings(race_database_url))


async def test_a_new_order_gets_the_wallet_free_longest_in_one_statement(pools: Pools) -> None:
    first, second, third = await pools.stock(3)
    taken = await pools.at_once("order-1", priority=Priority.VIP)
    assert taken is not None
    assert taken.address == first  # never used: free longest, in import order
    await pools.release("order-1")  # back to the pool, now the most recently freed
    assert [(await pools.at_once(f"order-{n}")) for n in (2, 3)] == [
        ReservedWallet(id=taken.id + 1, address=second),
        ReservedWallet(id=taken.id + 2, address=third),
    ]
    assert await pools.at_once("order-4", rested_before=utcnow()) == taken

    state = await pools.state()
    allocation = {row[0]: row for row in state["allocation"]}
    assert allocation["order-2"][1:5] == ("allocated", taken.id + 1, second, int(Priority.NORMAL))
    assert allocation["order-1"][1:3] == ("released", None)
    assert allocation["order-4"][1:3] == ("allocated", taken.id)
    wallets = {row[0]: row for row in state["wallet"]}
    assert wallets[taken.id][1:3] == ("reserved", "order-4")
    assert wallets[taken.id][5] == 2  # allocated twice over its life
    await pools.check_invariants()


async def test_a_repeated_order_id_writes_nothing_and_is_answered_as_it_stands(pools: Pools) -> None:
    first, _ = await pools.stock(2)
    assert (await pools.at_once("order-1")) is not None
    before = await pools.state()
    assert await pools.at_once("order-1") is None
    assert await pools.state() == before
    again = await pools.allocate("order-1")
    assert isinstance(again, AllocationAllocatedRead)
    assert again.address == first
    assert await pools.state() == before
    await pools.check_invariants()


async def test_a_released_or_tombstoned_order_writes_nothing_and_is_refused(pools: Pools) -> None:
    await pools.stock(2)
    assert await pools.at_once("order-1") is not None
    await pools.release("order-1")
    await pools.release("never-seen")  # a release that arrived before its allocation: a tombstone
    before = await pools.state()
    for order_id in ("order-1", "never-seen"):
        assert await pools.at_once(order_id) is None
        assert await pools.state() == before
        with pytest.raises(AllocationClosedError):
            await pools.allocate(order_id)
        assert await pools.state() == before
    await pools.check_invariants()


async def test_no_free_wallet_writes_nothing_and_the_order_is_queued(pools: Pools) -> None:
    await pools.stock(1)
    assert await pools.at_once("order-1") is not None
    before = await pools.state()
    assert await pools.at_once("order-2") is None
    assert await pools.state() == before
    queued = await pools.allocate("order-2")
    assert isinstance(queued, AllocationQueuedRead)
    assert queued.position == 1
    await pools.check_invariants()


async def test_a_waiting_queue_writes_nothing_and_a_new_order_queues_behind_it(
    race_database: Database, race_database_url: str
) -> None:
    # A wallet rests after its release (a reuse cool-down) while an order waits for it. Even told to ignore
    # the rest, the one statement does not take that wallet past the waiting order.
    pools = Pools(race_database, make_settings(race_database_url, reuse_cooldown_seconds={"BTC": 600}))
    [address] = await pools.stock(1)
    assert await pools.at_once("holder") is not None
    assert isinstance(await pools.allocate("waiting"), AllocationQueuedRead)
    await pools.release("holder")  # the wallet is free again, resting for 10 minutes; "waiting" still waits
    before = await pools.state()
    assert [row[1] for row in before["wallet"]] == ["free"]
    assert [row[0] for row in before["wait_queue_entry"]] == ["waiting"]

    ignoring_the_rest = utcnow() + timedelta(days=1)
    assert await pools.at_once("newcomer", rested_before=ignoring_the_rest) is None
    assert await pools.state() == before
    queued = await pools.allocate("newcomer")
    assert isinstance(queued, AllocationQueuedRead)
    assert queued.position == 2  # behind the order that was waiting first

    await pools.release("waiting")
    await pools.release("newcomer")  # the queue is empty now: the same call takes the wallet
    taken = await pools.at_once("later", rested_before=ignoring_the_rest)
    assert taken is not None
    assert taken.address == address
    await pools.check_invariants()


async def test_many_first_allocations_at_once_for_few_wallets_keep_every_invariant(pools: Pools) -> None:
    stocked = set(await pools.stock(20))
    orders = [f"rush-{n:03}" for n in range(80)]
    # Each order asked three times at once (a client retrying), all 240 requests racing for 20 wallets.
    requests = [order for order in orders for _ in range(3)]
    answers = await asyncio.gather(*(pools.allocate(order) for order in requests))

    by_order: dict[str, set[tuple[str, str | None]]] = {}
    for order, answer in zip(requests, answers, strict=True):
        address = answer.address if isinstance(answer, AllocationAllocatedRead) else None
        by_order.setdefault(order, set()).add((answer.status, address))
    assert all(len(seen) == 1 for seen in by_order.values()), "an order got two different answers"
    outcome = {order: seen.pop() for order, seen in by_order.items()}
    held = [address for status, address in outcome.values() if status == "allocated"]
    assert len(held) == 20
    assert set(held) == stocked  # every wallet handed out, each to one order
    assert Counter(status for status, _ in outcome.values()) == {"allocated": 20, "queued": 60}

    state = await pools.state()
    assert Counter(row[1] for row in state["wallet"]) == {"reserved": 20}
    assert len(state["allocation"]) == 80
    assert len(state["wait_queue_entry"]) == 60
    await pools.check_invariants()
