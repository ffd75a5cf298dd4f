"""Order intake when wallet-pool stalls or a request dies midway: the customer gets an answer within the
intake budget, the order's state is the truth (``awaiting_address``, no made-up queue place), every order is
announced exactly once whatever the moment of a crash, and a retry with the same ``Idempotency-Key`` gets the
order that was made. These tests run against a database of their own (intake commits for real) with
wallet-pool played by a stand-in that can go silent."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import delete, func, select, update

from coin_addresses import demo_address
from order_api.context import context_of
from order_api.db import outbox
from order_api.orders.intake import INTAKE_GRACE, request_fingerprint
from order_api.orders.models import IdempotencyKey, Order
from order_api.orders.schemas import OrderCreate
from order_api.protection import DataProtection
from order_api.testing import ApiKeys, OrderApi, OrderApiRunner, order_body, wallet_assigned
from order_api.workers.sweeper import announce_silent_orders, reconcile_pending_allocations
from servicekit.db import Database, utcnow
from servicekit.sealing import open_sealed_payload
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import serve_stand_in

PATIENCE_PER_ATTEMPT = 30.0
"""wallet-pool's per-attempt timeout in these tests: three attempts of it would take minutes."""


@dataclass
class SilentWalletPool:
    """``POST /v1/allocations`` as wallet-pool answers it (``mode``: ``allocated`` or ``queued``), except
    that while ``silent`` it takes the request and says nothing until it is woken."""

    url: str = ""
    mode: str = "allocated"
    silent: bool = False
    asked: list[str] = field(default_factory=list)
    awake: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self, mode: str) -> None:
        self.mode, self.silent = mode, False
        self.awake.set()


@pytest.fixture
async def wallet_pool() -> AsyncIterator[SilentWalletPool]:
    stand_in = SilentWalletPool()

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        stand_in.asked.append(body["order_id"])
        if stand_in.silent:
            await stand_in.awake.wait()
        base = {"order_id": body["order_id"], "currency": body["currency"], "network": body["network"]}
        if stand_in.mode == "queued":
            return web.json_response(
                {**base, "status": "queued", "position": 3, "estimated_wait_seconds": 60.0}, status=202
            )
        address = demo_address(currency="BTC", network="bitcoin", seed=len(stand_in.asked) + 500)
        return web.json_response({**base, "status": "allocated", "address": address}, status=201)

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    async with serve_stand_in(app) as url:
        stand_in.url = url
        yield stand_in
        stand_in.awake.set()  # let any request still held answer, so the server stops at once


@pytest.fixture
async def api(
    order_api: OrderApiRunner, own_database_url: str, wallet_pool: SilentWalletPool
) -> AsyncIterator[OrderApi]:
    """order-api on its own database; its workers are left idle (the tests run their passes themselves)."""
    async with order_api(
        database_url=own_database_url,
        wallet_pool=PeerSettings(url=wallet_pool.url, timeout_seconds=PATIENCE_PER_ATTEMPT),
        intake_budget_seconds=0.5,
        sweep_seconds=3600,
    ) as running:
        yield running


def database_of(api: OrderApi) -> Database:
    database: Database = service_state(api.app).runtime.database
    return database


async def order_events(database: Database, order_id: str) -> list[tuple[str, str, str | None]]:
    """The order's events to the notifier: (type, status, from_status), in the order they were written."""
    async with database.sessionmaker() as session:
        rows = (
            await session.execute(
                select(outbox.c.event_type, outbox.c.payload)
                .where(outbox.c.aggregate_id == order_id, outbox.c.destination == "notifier")
                .order_by(outbox.c.created_at, outbox.c.id)
            )
        ).all()
    return [(kind, payload["status"], payload.get("from_status")) for kind, payload in rows]


async def make_old(database: Database, order_id: str) -> None:
    """Move the order (and its key) back in time, past the window in which its request could still run."""
    past = utcnow() - timedelta(minutes=5)
    async with database.sessionmaker.begin() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(created_at=past))
        await session.execute(
            update(IdempotencyKey).where(IdempotencyKey.order_id == order_id).values(created_at=past)
        )


async def as_if_its_request_died(database: Database, order_id: str) -> None:
    """What a request killed between writing its order and announcing it leaves: the order (and the claim of
    its Idempotency-Key) written, no announcement, no answer stored under the key."""
    async with database.sessionmaker.begin() as session:
        await session.execute(update(Order).where(Order.id == order_id).values(announced_at=None))
        await session.execute(delete(outbox).where(outbox.c.aggregate_id == order_id))
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.order_id == order_id)
            .values(response_status=None, response_sealed=None, completed_at=None)
        )


async def test_a_silent_wallet_pool_costs_intake_its_budget_and_the_address_follows_once(
    api: OrderApi, wallet_pool: SilentWalletPool
) -> None:
    wallet_pool.silent = True
    email = f"stalled.{uuid.uuid4().hex[:8]}@example.com"
    created = []
    for path in ("new customer", "returning customer"):  # the fast path, then the general path
        started = time.monotonic()
        response = await api.client.post("/v1/orders", json=order_body(email))
        assert time.monotonic() - started < PATIENCE_PER_ATTEMPT, path  # the budget, not an attempt's timeout
        assert response.status_code == 201, response.text
        order = response.json()
        assert order["status"] == "awaiting_address", path
        assert (order["deposit_address"], order["queue_position"], order["estimated_wait_seconds"]) == (
            None,
            None,
            None,
        )
        created.append(order["id"])
    assert wallet_pool.asked == created  # one attempt each: the budget left no room for another

    database = database_of(api)
    for order_id in created:
        assert await order_events(database, order_id) == [("order.created", "awaiting_address", None)]

    wallet_pool.wake("allocated")
    for order_id in created:
        await make_old(database, order_id)  # past the reconciler's grace period
    reconciled = await reconcile_pending_allocations(
        database=database,
        wallet_pool=context_of(api.app).wallet_pool,
        settings=api.settings,
        protection=context_of(api.app).protection,
    )
    assert reconciled == 2
    for order_id in created:
        # one order.created (without the address), then one change to awaiting_deposit: "address ready"
        assert await order_events(database, order_id) == [
            ("order.created", "awaiting_address", None),
            ("order.status_changed", "awaiting_deposit", "awaiting_address"),
        ]
    assert (
        await announce_silent_orders(
            database=database, settings=api.settings, protection=context_of(api.app).protection
        )
        == 0
    )


async def test_a_queue_place_after_the_budget_makes_the_order_queued_and_a_closed_order_has_none(
    api: OrderApi, wallet_pool: SilentWalletPool
) -> None:
    wallet_pool.silent = True
    order = (
        await api.client.post("/v1/orders", json=order_body(f"q.{uuid.uuid4().hex[:8]}@example.com"))
    ).json()
    database = database_of(api)
    wallet_pool.wake("queued")
    await make_old(database, order["id"])
    await reconcile_pending_allocations(
        database=database,
        wallet_pool=context_of(api.app).wallet_pool,
        settings=api.settings,
        protection=context_of(api.app).protection,
    )
    auth = {"Authorization": f"Bearer {order['session_token']}"}
    read = (await api.client.get(f"/v1/orders/{order['id']}", headers=auth)).json()
    assert (read["status"], read["queue_position"], read["estimated_wait_seconds"]) == ("queued", 3, 60)

    cancelled = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200, cancelled.text
    closed = cancelled.json()
    assert (closed["status"], closed["queue_position"], closed["estimated_wait_seconds"]) == (
        "cancelled",
        None,
        None,
    )
    async with database.sessionmaker() as session:
        payloads = (
            (
                await session.execute(
                    select(outbox.c.payload)
                    .where(
                        outbox.c.aggregate_id == order["id"], outbox.c.event_type == "order.status_changed"
                    )
                    .order_by(outbox.c.created_at, outbox.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(p["status"], p["queue_position"]) for p in payloads] == [("queued", 3), ("cancelled", None)]


async def test_an_order_a_crash_left_silent_is_announced_once_by_the_sweeper(
    api: OrderApi, wallet_pool: SilentWalletPool
) -> None:
    wallet_pool.silent = True
    database = database_of(api)
    email = f"l.{uuid.uuid4().hex[:8]}@example.com"
    left = (await api.client.post("/v1/orders", json=order_body(email))).json()
    young = (
        await api.client.post("/v1/orders", json=order_body(f"y.{uuid.uuid4().hex[:8]}@example.com"))
    ).json()
    for order in (left, young):
        await as_if_its_request_died(database, order["id"])
    await make_old(database, left["id"])  # ``young`` could still be in the hands of its request

    # Every replica's sweeper at once: the order is announced once.
    passes = await asyncio.gather(
        *(
            announce_silent_orders(
                database=database, settings=api.settings, protection=context_of(api.app).protection
            )
            for _ in range(4)
        )
    )
    assert sum(passes) == 1
    assert await order_events(database, left["id"]) == [("order.created", "awaiting_address", None)]
    assert await order_events(database, young["id"]) == []
    async with database.sessionmaker() as session:
        [payload] = (
            await session.execute(select(outbox.c.payload).where(outbox.c.aggregate_id == left["id"]))
        ).scalars()
    assert payload["queue_position"] is None
    protection: DataProtection = context_of(api.app).protection
    opened = open_sealed_payload(
        protection.event_keyring(), payload, event_type="order.created", aggregate_id=left["id"]
    )
    assert opened["customer_email"] == email  # sealed for the notifier, as intake writes it
    assert (
        await announce_silent_orders(
            database=database, settings=api.settings, protection=context_of(api.app).protection
        )
        == 0
    )


async def test_a_retry_gets_the_order_its_dead_request_made_with_a_new_session(
    api: OrderApi, wallet_pool: SilentWalletPool
) -> None:
    wallet_pool.silent = True
    database = database_of(api)
    body = order_body(f"retry.{uuid.uuid4().hex[:8]}@example.com")
    headers = {"Idempotency-Key": "checkout-7"}
    first = (await api.client.post("/v1/orders", json=body, headers=headers)).json()
    await as_if_its_request_died(database, first["id"])  # the client never saw ``first``

    still_running = await api.client.post("/v1/orders", json=body, headers=headers)
    assert still_running.status_code == 409, still_running.text
    assert still_running.json()["code"] == "idempotency_key_in_flight"
    limit = api.settings.intake_budget_seconds + INTAKE_GRACE.total_seconds()
    assert 1 <= int(still_running.headers["Retry-After"]) <= limit + 1

    await make_old(database, first["id"])
    # Three retries at once (the client's and two impatient ones): one recovers the order, the others wait
    # for it and get the same answer.
    retries = await asyncio.gather(
        *(api.client.post("/v1/orders", json=body, headers=headers) for _ in range(3))
    )
    assert [r.status_code for r in retries] == [201, 201, 201], [r.text for r in retries]
    recovered = retries[0].json()
    assert all(r.json() == recovered for r in retries)
    assert (recovered["id"], recovered["status"]) == (first["id"], "awaiting_address")
    assert recovered["session_token"].startswith("cs_")
    assert recovered["session_token"] != first["session_token"]  # only its hash was kept: a new session
    read = await api.client.get(
        f"/v1/orders/{first['id']}", headers={"Authorization": f"Bearer {recovered['session_token']}"}
    )
    assert read.status_code == 200

    again = await api.client.post("/v1/orders", json=body, headers=headers)
    assert (again.status_code, again.json()) == (201, recovered)
    async with database.sessionmaker() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
    assert orders == 1
    assert await order_events(database, first["id"]) == [("order.created", "awaiting_address", None)]
    assert (
        await announce_silent_orders(
            database=database, settings=api.settings, protection=context_of(api.app).protection
        )
        == 0
    )


async def test_a_key_whose_request_wrote_no_order_is_released_to_the_retry(api: OrderApi) -> None:
    """A key claimed by a request that never wrote its order (a claim from before keys named their order)
    is no dead end: the retry is taken as the first request."""
    body = order_body(f"released.{uuid.uuid4().hex[:8]}@example.com")
    earlier = await api.client.post("/v1/orders", json=order_body(body["email"], amount="0.07"))
    assert earlier.status_code == 201  # keys are written with their customer: the email is one
    protection: DataProtection = context_of(api.app).protection
    owner = protection.email_index(body["email"])
    database = database_of(api)
    async with database.sessionmaker.begin() as session:
        session.add(
            IdempotencyKey(
                owner=owner,
                key="checkout-9",
                request_fingerprint=request_fingerprint(OrderCreate.model_validate(body)),
                created_at=utcnow() - timedelta(minutes=5),
            )
        )
    retried = await api.client.post("/v1/orders", json=body, headers={"Idempotency-Key": "checkout-9"})
    assert retried.status_code == 201, retried.text
    async with database.sessionmaker() as session:
        key = (
            await session.execute(select(IdempotencyKey).where(IdempotencyKey.owner == owner))
        ).scalar_one()
        orders = await session.scalar(select(func.count()).select_from(Order))
    assert (key.order_id, key.response_status, orders) == (retried.json()["id"], 201, 2)


async def test_an_address_event_for_an_order_nobody_announced_announces_it_with_the_address(
    api: OrderApi, wallet_pool: SilentWalletPool, api_keys: ApiKeys
) -> None:
    """wallet-pool's ``wallet.assigned`` reaching an order its request never announced: the customer is told
    once, that the order exists with this address (not "created" and then "address ready")."""
    wallet_pool.silent = True
    database = database_of(api)
    order = (
        await api.client.post("/v1/orders", json=order_body(f"a.{uuid.uuid4().hex[:8]}@example.com"))
    ).json()
    await as_if_its_request_died(database, order["id"])
    address = demo_address(currency="BTC", network="bitcoin", seed=77)
    answer = await api.client.post(
        "/v1/events",
        json=wallet_assigned(order["id"], address),
        headers={"Authorization": f"Bearer {api_keys.wallet_pool}"},
    )
    assert answer.json()["status"] == "processed", answer.text
    assert await order_events(database, order["id"]) == [("order.created", "awaiting_deposit", None)]
    await make_old(database, order["id"])
    assert (
        await announce_silent_orders(
            database=database, settings=api.settings, protection=context_of(api.app).protection
        )
        == 0
    )
