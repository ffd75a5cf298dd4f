"""Allocation, the wait queue and release, through the HTTP API (one rolled-back transaction per test)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import WalletAssigned
from servicekit.db import utcnow
from wallet_pool.allocations.service import hand_rested_wallets_to_waiting_orders
from wallet_pool.pools import Pool
from wallet_pool.testing import PoolApi, RunningApp, assert_pool_invariants


async def rows(session: AsyncSession, sql: str, **params: Any) -> list[Any]:
    return list((await session.execute(text(sql), params)).all())


async def address_of(api: PoolApi, order_id: str) -> str:
    body = (await api.allocation(order_id)).json()
    assert body["status"] == "allocated", body
    return str(body["address"])


async def test_allocation_hands_out_the_never_used_then_the_longest_free_wallet(api: PoolApi) -> None:
    ids = await api.stock("BTC", 3)
    wallets = {w["id"]: w["address"] for w in (await api.list_wallets()).json()["items"]}

    first = await api.allocate("o1")
    assert first.status_code == 201
    body = first.json()
    assert set(body) == {"order_id", "status", "currency", "network", "address", "allocated_at"}
    assert (body["order_id"], body["status"], body["currency"], body["network"]) == (
        "o1",
        "allocated",
        "BTC",
        "bitcoin",
    )
    assert body["address"] == wallets[ids[0]]  # never used, lowest id first
    assert (await api.allocate("o2")).json()["address"] == wallets[ids[1]]

    # Released in the order o2, o1: wallet 3 (never used) goes first, then the one free the longest.
    await api.release("o2")
    await api.release("o1")
    assert (await api.allocate("o3")).json()["address"] == wallets[ids[2]]
    assert (await api.allocate("o4")).json()["address"] == wallets[ids[1]]
    assert (await api.allocate("o5")).json()["address"] == wallets[ids[0]]
    counts = {w["id"]: w["allocation_count"] for w in (await api.list_wallets()).json()["items"]}
    assert counts == {ids[0]: 2, ids[1]: 2, ids[2]: 1}


async def test_allocation_is_idempotent_per_order(api: PoolApi, session: AsyncSession) -> None:
    await api.stock("BTC", 2)
    first = await api.allocate("same-order")
    again = await api.allocate("same-order", network="bitcoin", priority="vip")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert await rows(session, "SELECT count(*) FROM wallet WHERE order_id = 'same-order'") == [(1,)]

    await api.allocate("holder")
    queued = await api.allocate("waiter")
    assert queued.status_code == 202
    repeated = await api.allocate("waiter")
    assert (repeated.status_code, repeated.json()) == (202, queued.json())

    other_pool = await api.allocate("same-order", "ETH")
    assert other_pool.status_code == 409
    assert other_pool.json()["code"] == "allocation_mismatch"


async def test_orders_wait_in_priority_then_arrival_order(api: PoolApi) -> None:
    await api.stock("BTC", 1)
    await api.allocate("holder")
    arrivals = [("n1", "normal"), ("p1", "priority"), ("n2", "normal"), ("v1", "vip"), ("p2", "priority")]
    for order, priority in arrivals:
        response = await api.allocate(order, priority=priority)
        assert response.status_code == 202
        body = response.json()
        assert set(body) == {
            "order_id",
            "status",
            "currency",
            "network",
            "position",
            "estimated_wait_seconds",
            "enqueued_at",
        }
        assert body["estimated_wait_seconds"] is None  # nothing released lately: unknown
    positions = {order: (await api.allocation(order)).json()["position"] for order, _ in arrivals}
    assert positions == {"v1": 1, "p1": 2, "p2": 3, "n1": 4, "n2": 5}
    got = await api.allocation("v1")
    assert (got.status_code, got.json()["status"]) == (200, "queued")

    # Served from the head: each release hands the wallet to the next in line.
    served = []
    holder = "holder"
    for _ in arrivals:
        handed_to = (await api.release(holder)).json()["handed_to_order_id"]
        served.append(handed_to)
        holder = handed_to
    assert served == ["v1", "p1", "p2", "n1", "n2"]


async def test_release_hands_the_wallet_to_the_head_of_the_queue_in_the_same_transaction(
    api: PoolApi, session: AsyncSession
) -> None:
    await api.stock("BTC", 1)
    await api.stock("ETH", 1)
    await api.allocate("holder")
    await api.allocate("eth-waiter", "ETH")  # another pool: untouched
    await api.allocate("eth-holder", "ETH")
    await api.allocate("first")
    await api.allocate("second")
    address = await address_of(api, "holder")

    released = await api.release("holder")
    assert released.status_code == 200
    assert released.json() == {
        "order_id": "holder",
        "status": "released",
        "address": address,
        "handed_to_order_id": "first",
    }
    assigned = (await api.allocation("first")).json()
    assert (assigned["status"], assigned["address"]) == ("allocated", address)
    assert (await api.allocation("second")).json()["position"] == 1

    (event,) = await rows(
        session,
        "SELECT destination, event_type, aggregate_id, payload, xmin::text AS tx FROM outbox",
    )
    assert (event.destination, event.event_type, event.aggregate_id) == (
        "order-api",
        "wallet.assigned",
        "first",
    )
    assert event.payload == {
        "order_id": "first",
        "currency": "BTC",
        "network": "bitcoin",
        "address": address,
        "assigned_at": event.payload["assigned_at"],
    }
    assert event.payload["assigned_at"].startswith(assigned["allocated_at"][:19])
    assert WalletAssigned.model_validate(event.payload).payload() == event.payload  # as order-api reads it
    # One transaction wrote the event, the hand-over and the release (same transaction id on each row).
    (changed,) = await rows(
        session,
        """SELECT count(DISTINCT tx) FROM (
             SELECT xmin::text AS tx FROM allocation WHERE order_id IN ('holder', 'first')
             UNION ALL SELECT xmin::text FROM wallet WHERE order_id = 'first'
             UNION ALL SELECT xmin::text FROM outbox) AS written""",
    )
    assert changed == (1,)
    (released_row,) = await rows(session, "SELECT xmin::text FROM allocation WHERE order_id = 'holder'")
    assert released_row[0] == event.tx
    await assert_pool_invariants(session)


async def test_release_of_a_queued_order_leaves_the_queue(api: PoolApi, session: AsyncSession) -> None:
    await api.stock("BTC", 1)
    await api.allocate("holder")
    for order in ("a", "b", "c"):
        await api.allocate(order)
    released = (await api.release("b")).json()
    assert released == {"order_id": "b", "status": "released", "address": None, "handed_to_order_id": None}
    assert (await api.allocation("c")).json()["position"] == 2
    gone = (await api.allocation("b")).json()
    assert (gone["status"], gone["address"], gone["currency"]) == ("released", None, "BTC")
    assert (await api.release("holder")).json()["handed_to_order_id"] == "a"
    assert (await api.release("a")).json()["handed_to_order_id"] == "c"
    await assert_pool_invariants(session)


async def test_release_is_idempotent_and_a_released_order_never_gets_another_address(api: PoolApi) -> None:
    await api.stock("BTC", 2)
    address = (await api.allocate("o1")).json()["address"]
    first = await api.release("o1")
    second = await api.release("o1")
    assert first.status_code == second.status_code == 200
    assert (
        first.json()
        == second.json()
        == {
            "order_id": "o1",
            "status": "released",
            "address": address,
            "handed_to_order_id": None,
        }
    )
    after = (await api.allocation("o1")).json()
    assert (after["status"], after["address"], after["currency"], after["network"]) == (
        "released",
        address,
        "BTC",
        "bitcoin",
    )
    again = await api.allocate("o1")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "allocation_closed"


async def test_a_release_for_an_unknown_order_leaves_a_tombstone(api: PoolApi, session: AsyncSession) -> None:
    await api.stock("BTC", 1)
    response = await api.release("never-seen")
    assert response.status_code == 200
    assert response.json() == {
        "order_id": "never-seen",
        "status": "released",
        "address": None,
        "handed_to_order_id": None,
    }
    assert (await api.release("never-seen")).json() == response.json()
    tombstone = (await api.allocation("never-seen")).json()
    assert (tombstone["status"], tombstone["currency"], tombstone["address"]) == ("released", None, None)
    late = await api.allocate("never-seen")
    assert (late.status_code, late.json()["code"]) == (409, "allocation_closed")
    assert await rows(session, "SELECT count(*) FROM wallet WHERE status = 'free'") == [(1,)]


async def test_unknown_allocations_and_bad_requests(api: PoolApi, reader_api: PoolApi) -> None:
    missing = await api.allocation("nobody")
    assert missing.status_code == 404
    assert missing.json()["code"] == "allocation_not_found"
    for body in (
        {"order_id": "x", "currency": "DOGE"},
        {"order_id": "x", "currency": "USDT", "network": "BEP20"},
        {"order_id": "", "currency": "BTC"},
        {"order_id": "x", "currency": "BTC", "priority": "urgent"},
    ):
        response = await api.client.post("/v1/allocations", json=body, headers=api.headers)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_failed"
    assert (await reader_api.allocate("x")).status_code == 403
    assert (await reader_api.release("x")).status_code == 403
    assert (await reader_api.allocation("x")).status_code == 404


async def test_usdt_pools_are_per_network(api: PoolApi) -> None:
    await api.stock("USDT", 1, network="ERC20")
    queued = await api.allocate("trc", "USDT")  # TRC20 by default: no wallet there
    assert (queued.status_code, queued.json()["network"]) == (202, "TRC20")
    erc = await api.allocate("erc", "USDT", network="ERC20")
    assert (erc.status_code, erc.json()["network"]) == (201, "ERC20")


async def test_a_released_address_rests_for_its_cool_down_then_goes_to_the_queue(
    pool_app: RunningApp, api: PoolApi, session: AsyncSession
) -> None:
    """ETH has a 600 s reuse cool-down in this app's settings."""
    await api.stock("ETH", 2)
    first = (await api.allocate("a", "ETH")).json()["address"]
    await api.allocate("b", "ETH")
    released = (await api.release("a")).json()
    assert released["handed_to_order_id"] is None  # resting, not handed on

    # Resting: a new order waits rather than reuse it, even though the wallet is free.
    assert (await api.allocate("c", "ETH")).status_code == 202
    assert (await api.allocate("d", "ETH")).json()["position"] == 2
    await assert_pool_invariants(session, resting_since=utcnow() - timedelta(seconds=600))
    pool = Pool("ETH", "ethereum")
    settings = pool_app.settings
    early = utcnow() + timedelta(seconds=590)
    assert (
        await hand_rested_wallets_to_waiting_orders(session=session, settings=settings, pool=pool, now=early)
        == 0
    )

    later = utcnow() + timedelta(seconds=601)
    assert (
        await hand_rested_wallets_to_waiting_orders(session=session, settings=settings, pool=pool, now=later)
        == 1
    )
    assert await address_of(api, "c") == first
    assert (await api.allocation("d")).json()["position"] == 1
    events = await rows(session, "SELECT aggregate_id FROM outbox WHERE event_type = 'wallet.assigned'")
    assert events == [("c",)]


async def test_the_estimated_wait_follows_the_pools_release_rate(pool_app: RunningApp, api: PoolApi) -> None:
    await api.stock("BTC", 1)
    holder = "h0"
    await api.allocate(holder)
    for index in range(1, 4):  # three releases in the window, each handing the wallet on
        await api.allocate(f"h{index}")
        await api.release(holder)
        holder = f"h{index}"
    await api.allocate("w1")
    waiting = await api.allocate("w2")
    window = pool_app.settings.stats_window_seconds
    assert waiting.json()["position"] == 2
    assert waiting.json()["estimated_wait_seconds"] == 2 * window // 3


async def test_allocation_metrics_are_counted(api: PoolApi) -> None:
    await api.stock("BTC", 1)
    await api.allocate("m1")
    await api.allocate("m2")
    await api.release("m1")
    page = (await api.client.get("/metrics")).text
    assert 'wallet_pool_allocations_total{currency="BTC",network="bitcoin",result="allocated"}' in page
    assert 'wallet_pool_allocations_total{currency="BTC",network="bitcoin",result="queued"}' in page
    assert 'wallet_pool_releases_total{currency="BTC",held="wallet",network="bitcoin"}' in page
    assert 'wallet_pool_queue_assignments_total{currency="BTC",network="bitcoin"}' in page


async def test_order_apis_order_closed_command_releases_the_address(
    api: PoolApi, reader_api: PoolApi, session: AsyncSession
) -> None:
    """order-api releases through its outbox: ``order.closed`` on ``POST /v1/events``, exactly once."""
    await api.stock("BTC", 1)
    address = (await api.allocate("closing")).json()["address"]
    await api.allocate("waiting")

    def envelope(event_id: str, order_id: str) -> dict[str, Any]:
        return {
            "id": event_id,
            "type": "order.closed",
            "source": "order-api",
            "occurred_at": utcnow().isoformat(),
            "aggregate_id": order_id,
            "payload": {"order_id": order_id, "status": "completed", "currency": "BTC", "network": "bitcoin"},
        }

    first = await api.client.post("/v1/events", json=envelope(EVENT_ID, "closing"), headers=api.headers)
    assert first.json() == {"event_id": EVENT_ID, "status": "processed"}
    again = await api.client.post("/v1/events", json=envelope(EVENT_ID, "closing"), headers=api.headers)
    assert again.json()["status"] == "duplicate"
    refused = await reader_api.client.post(
        "/v1/events", json=envelope(OTHER_ID, "x"), headers=reader_api.headers
    )
    assert refused.status_code == 403
    assert (await api.allocation("closing")).json()["status"] == "released"
    assert await address_of(api, "waiting") == address
    # An order closed before wallet-pool ever saw it: the tombstone refuses a late allocation.
    unknown = await api.client.post("/v1/events", json=envelope(OTHER_ID, "early"), headers=api.headers)
    assert unknown.json()["status"] == "processed"
    assert (await api.allocate("early")).json()["code"] == "allocation_closed"
    await assert_pool_invariants(session)


EVENT_ID = "6a1f2c3e-0000-4000-8000-000000000001"
OTHER_ID = "6a1f2c3e-0000-4000-8000-000000000002"
