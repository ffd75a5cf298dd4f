"""order-api against a hostile wallet-pool: whatever it answers, the customer's order is accepted (``201``)
without anything made up stored, no answer is a ``500`` after the order was committed, the peer's own
problem never reaches the customer, and once wallet-pool answers properly the reconciler assigns a valid
address. On PostgreSQL (a new customer's order takes the fast intake path, a returning one the general path)
and on the embedded SQLite default (the general path)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import demo_address, validate_address
from order_api.context import context_of
from order_api.db import outbox
from order_api.orders.models import AllocationState, Order, OrderEvent
from order_api.testing import ApiKeys, OrderApiRunner, order_body
from order_api.workers.sweeper import reconcile_pending_allocations
from servicekit.db import Database, utcnow
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import migrate_embedded, serve_stand_in

HELD_BY_EVERYONE = demo_address(currency="BTC", network="bitcoin", seed=424242)
ETH_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
SCRIPT = "<script>alert(1)</script>"
FLOOD_BYTES = 30 * 1024 * 1024


class Recorded(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class HostileWalletPool:
    """wallet-pool's allocation routes answering as ``mode`` says: one hostile answer, or ``good`` (a fresh
    valid address per order)."""

    mode: str = "good"
    url: str = ""
    given: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    """The order ids of every ``POST /v1/allocations``."""


async def _flood(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=201, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b" " * (256 * 1024)
    try:
        await response.write(b'{"padding": "')
        for _ in range(FLOOD_BYTES // len(chunk)):
            await response.write(chunk)
        await response.write(b'"}')
    except ConnectionError:  # order-api stopped reading
        pass
    return response


@pytest.fixture
async def wallet_pool() -> AsyncIterator[HostileWalletPool]:
    stand_in = HostileWalletPool()

    async def answer(request: web.Request, order_id: str, currency: str, network: str) -> web.StreamResponse:
        base = {"order_id": order_id, "currency": currency, "network": network}
        mode = stand_in.mode
        if mode == "flood":
            return await _flood(request)
        if mode == "rate_limited":
            problem = {
                "type": "urn:exchange-desk:problem:rate_limited",
                "title": "Too many requests",
                "status": 429,
                "detail": f"{SCRIPT} come back tomorrow",
                "code": "rate_limited",
                "retry_after_seconds": 99999,
            }
            return web.json_response(
                problem, status=429, content_type="application/problem+json", headers={"Retry-After": "99999"}
            )
        if mode == "queued":
            return web.json_response(
                {**base, "status": "queued", "position": 3, "estimated_wait_seconds": 60}, status=202
            )
        if mode == "absurd_queue":
            queued = {**base, "status": "queued", "position": 2**40, "estimated_wait_seconds": 1e308}
            return web.json_response(queued, status=202)
        address = {
            "script": SCRIPT,
            "same_for_everyone": HELD_BY_EVERYONE,
            "eth_for_btc": ETH_ADDRESS,
            "another_orders": demo_address(currency="BTC", network="bitcoin", seed=7),
        }.get(mode)
        if mode == "another_orders":
            base["order_id"] = str(uuid.uuid4())
        if address is None:
            address = demo_address(currency=currency, network=network, seed=len(stand_in.given) + 1000)
        stand_in.given.append(address)
        return web.json_response({**base, "status": "allocated", "address": address}, status=201)

    async def allocate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        stand_in.asked.append(body["order_id"])
        return await answer(request, body["order_id"], body["currency"], body["network"])

    async def allocation(request: web.Request) -> web.StreamResponse:
        return await answer(request, request.match_info["order_id"], "BTC", "bitcoin")

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    app.router.add_get("/v1/allocations/{order_id}", allocation)
    async with serve_stand_in(app) as url:
        stand_in.url = url
        yield stand_in


HOSTILE = [
    "script",
    "same_for_everyone",
    "eth_for_btc",
    "another_orders",
    "flood",
    "rate_limited",
    "absurd_queue",
]


@pytest.fixture(params=["postgresql", "sqlite"])
async def database_for(
    request: pytest.FixtureRequest, own_database_url: str, tmp_path: Path
) -> dict[str, Any]:
    """order-api's database settings: its own PostgreSQL database, or the embedded SQLite default."""
    if request.param == "postgresql":
        return {"database_url": own_database_url}
    var_dir = tmp_path / "embedded"
    await migrate_embedded(var_dir, "order-api")
    return {"database_url": None, "var_dir": var_dir}


async def stored_orders(database: Database) -> dict[str, Order]:
    async with database.sessionmaker() as session:
        return {o.id: o for o in (await session.execute(select(Order))).scalars()}


async def orders_and_history(database: Database) -> list[Any]:
    async with database.sessionmaker() as session:
        orders = (
            await session.execute(
                select(
                    Order.id,
                    Order.status,
                    Order.allocation_state,
                    Order.deposit_address,
                    Order.queue_position,
                ).order_by(Order.id)
            )
        ).all()
        history = (await session.execute(select(OrderEvent.details).order_by(OrderEvent.id))).scalars().all()
    return [[list(o) for o in orders], history]


async def everything_stored(database: Database) -> str:
    async with database.sessionmaker() as session:
        events = (await session.execute(select(outbox.c.payload))).scalars().all()
    return json.dumps([await orders_and_history(database), events], default=str)


async def test_no_hostile_answer_is_stored_or_reaches_the_customer_and_the_reconciler_recovers(
    order_api: OrderApiRunner,
    database_for: dict[str, Any],
    wallet_pool: HostileWalletPool,
    api_keys: ApiKeys,
) -> None:
    async with order_api(
        **database_for, wallet_pool=PeerSettings(url=wallet_pool.url, timeout_seconds=5.0), sweep_seconds=3600
    ) as api:
        database: Database = service_state(api.app).runtime.database
        client = api.client
        warnings = Recorded(level=logging.WARNING)
        logging.getLogger("order_api.orders").addHandler(warnings)

        # The first order gets a good address, which the stand-in then hands to everyone.
        first = await client.post("/v1/orders", json=order_body(f"first.{uuid.uuid4().hex[:8]}@example.com"))
        assert first.status_code == 201, first.text
        wallet_pool.mode = "same_for_everyone"
        held = await client.post("/v1/orders", json=order_body(f"held.{uuid.uuid4().hex[:8]}@example.com"))
        assert held.status_code == 201, held.text
        assert held.json()["deposit_address"] == HELD_BY_EVERYONE

        refused: dict[str, dict[str, Any]] = {}
        for mode in HOSTILE:
            wallet_pool.mode = mode
            # a new customer (PostgreSQL: the fast path), then a returning one (the general path)
            email = f"{mode}.{uuid.uuid4().hex[:8]}@example.com"
            for attempt in ("new", "returning"):
                response = await client.post("/v1/orders", json=order_body(email))
                assert response.status_code == 201, (mode, attempt, response.text)
                assert "Retry-After" not in response.headers, mode
                created = response.json()
                assert (created["status"], created["deposit_address"]) == ("awaiting_address", None), (
                    mode,
                    created,
                )
                assert (created["queue_position"], created["estimated_wait_seconds"]) == (None, None), mode
                refused[f"{mode}/{attempt}"] = created

        orders = await stored_orders(database)
        for name, created in refused.items():
            order = orders[created["id"]]
            assert (order.status, order.deposit_address) == ("awaiting_address", None), name
            assert order.allocation_state == AllocationState.PENDING, name
            assert order.queue_position is None, name
        stored = await everything_stored(database)
        for made_up in (
            "script",
            ETH_ADDRESS,
            demo_address(currency="BTC", network="bitcoin", seed=7),
            "99999",
        ):
            assert made_up not in stored, made_up
        assert [o.id for o in orders.values() if o.deposit_address == HELD_BY_EVERYONE] == [held.json()["id"]]
        logging.getLogger("order_api.orders").removeHandler(warnings)
        warned = [
            r for r in warnings.records if r.getMessage().startswith("no usable answer from wallet-pool")
        ]
        assert {r.__dict__["order_id"] for r in warned} >= {c["id"] for c in refused.values()}

        # wallet.assigned carrying a bad address, or one another open order holds, is refused: nothing stored
        victim = refused["script/new"]["id"]
        for address in (SCRIPT, ETH_ADDRESS, HELD_BY_EVERYONE):
            event = {
                "id": str(uuid.uuid4()),
                "type": "wallet.assigned",
                "source": "wallet-pool",
                "occurred_at": utcnow().isoformat(),
                "aggregate_id": victim,
                "payload": {"order_id": victim, "currency": "BTC", "network": "bitcoin", "address": address},
            }
            answer = await client.post(
                "/v1/events", json=event, headers={"Authorization": f"Bearer {api_keys.wallet_pool}"}
            )
            assert answer.status_code == 422, (address, answer.text)
        assert (await stored_orders(database))[victim].deposit_address is None

        async with database.sessionmaker.begin() as session:  # old enough for the reconciler's grace period
            await session.execute(update(Order).values(created_at=utcnow() - timedelta(minutes=1)))
        # Still hostile: the reconciler asks for every waiting order (an unusable answer for one does not stop
        # the pass), and stores nothing.
        before = await orders_and_history(database)
        for mode in ("eth_for_btc", "same_for_everyone"):
            wallet_pool.mode = mode
            wallet_pool.asked.clear()
            settled = await reconcile_pending_allocations(
                database=database,
                wallet_pool=context_of(api.app).wallet_pool,
                settings=api.settings,
                protection=context_of(api.app).protection,
            )
            assert settled == 0, mode
            assert sorted(wallet_pool.asked) == sorted(c["id"] for c in refused.values()), mode
        assert await orders_and_history(database) == before

        # wallet-pool comes to its senses: the reconciler gives every waiting order a valid address of its own
        wallet_pool.mode = "good"
        settled = await reconcile_pending_allocations(
            database=database,
            wallet_pool=context_of(api.app).wallet_pool,
            settings=api.settings,
            protection=context_of(api.app).protection,
        )
        assert settled == len(refused)
        orders = await stored_orders(database)
    addresses = [o.deposit_address for o in orders.values()]
    assert all(o.status == "awaiting_deposit" for o in orders.values())
    assert len(set(addresses)) == len(addresses) == len(refused) + 2
    for assigned in addresses:
        assert assigned is not None
        assert validate_address(currency="BTC", network="bitcoin", address=assigned) == assigned


async def test_reading_a_queued_order_shows_its_last_known_place_whatever_wallet_pool_answers_live(
    order_api: OrderApiRunner, db_session: AsyncSession, wallet_pool: HostileWalletPool, unique_email: str
) -> None:
    wallet_pool.mode = "queued"
    async with order_api(session=db_session, wallet_pool=PeerSettings(url=wallet_pool.url)) as api:
        created = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
        assert (created["status"], created["queue_position"]) == ("queued", 3)
        auth = {"Authorization": f"Bearer {created['session_token']}"}
        for mode in ("flood", "rate_limited", "absurd_queue", "another_orders", "script"):
            wallet_pool.mode = mode
            read = await api.client.get(f"/v1/orders/{created['id']}", headers=auth)
            assert read.status_code == 200, (mode, read.text)
            assert "Retry-After" not in read.headers
            body = read.json()
            assert (body["status"], body["deposit_address"], body["queue_position"]) == ("queued", None, 3), (
                mode
            )
            assert body["estimated_wait_seconds"] == 60, mode
