"""Order intake, reading and cancelling through the HTTP API (in process; wallet-pool is a stand-in or
unreachable)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.context import context_of
from order_api.customers.models import Customer
from order_api.db import outbox
from order_api.orders.models import AllocationState, Order, OrderEvent
from order_api.testing import PAYOUT_USDT, ApiKeys, OrderApi, OrderApiRunner, order_body
from order_api.workers.sweeper import expire_overdue_orders, reconcile_pending_allocations
from servicekit.db import Database, utcnow
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import eventually, serve_stand_in

BTC_DEPOSIT = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"


async def count(session: AsyncSession, model: type[Any]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@dataclass
class WalletPoolStandIn:
    """Answers ``POST /v1/allocations`` like wallet-pool: addresses while it has some, then queue places."""

    addresses: list[str]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    queued: int = 0


@pytest.fixture
async def wallet_pool_stand_in() -> AsyncIterator[WalletPoolStandIn]:
    stand_in = WalletPoolStandIn(addresses=[BTC_DEPOSIT])

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        stand_in.requests.append(body)
        base = {"order_id": body["order_id"], "currency": body["currency"], "network": body["network"]}
        if stand_in.addresses:
            return web.json_response(
                {**base, "status": "allocated", "address": stand_in.addresses.pop()}, status=201
            )
        stand_in.queued += 1
        return web.json_response(
            {**base, "status": "queued", "position": stand_in.queued, "estimated_wait_seconds": 90.0},
            status=202,
        )

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    async with serve_stand_in(app) as url:
        stand_in.url = url
        yield stand_in


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"from_currency": "DOGE"}, "from_currency"),
        ({"to_currency": "XRP"}, "to_currency"),
        ({"amount": "-0.5"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.123456789"}, "amount"),
        ({"amount": "1000"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": [1]}, "amount"),
        ({"amount": "lots"}, "amount"),
        ({"payout_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6T"}, "payout_address"),
        ({"payout_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}, "payout_address"),
        ({"to_network": "SOLANA"}, "to_network"),
        ({"email": "not-an-email"}, "email"),
        ({"email": None}, "email"),
        ({"locale": "de"}, "locale"),
        ({"payout_address": "T" * 500}, "payout_address"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    api: OrderApi, db_session: AsyncSession, unique_email: str, overrides: dict[str, Any], field_name: str
) -> None:
    before = (await count(db_session, Order), await count(db_session, Customer))
    response = await api.client.post("/v1/orders", json=order_body(unique_email, **overrides))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert field_name in [e["field"] for e in problem["errors"]], problem
    assert (await count(db_session, Order), await count(db_session, Customer)) == before


async def test_an_oversized_body_is_refused_before_parsing(api: OrderApi, db_session: AsyncSession) -> None:
    body = json.dumps(order_body("big@example.com", payout_address="x" * 20_000))
    response = await api.client.post("/v1/orders", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body"
    assert await count(db_session, Order) == 0
    assert response.json()["code"] == "body_too_large"


async def test_an_order_is_accepted_while_wallet_pool_is_unreachable(
    api: OrderApi, db_session: AsyncSession, unique_email: str
) -> None:
    response = await api.client.post("/v1/orders", json=order_body(unique_email, amount=0.1))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "awaiting_address"  # truthful: no address, no place in any queue yet
    assert order["queue_position"] is None
    assert order["estimated_wait_seconds"] is None
    assert order["deposit_address"] is None
    assert order["amount"] == "0.1"  # a JSON number is read exactly, never through a float
    assert order["session_token"].startswith("cs_")
    assert order["expires_at"] > order["created_at"]
    stored = (await db_session.execute(select(Order).where(Order.id == order["id"]))).scalar_one()
    assert stored.allocation_state == AllocationState.PENDING
    assert PAYOUT_USDT not in stored.payout_address_sealed  # encrypted at rest
    event = (
        await db_session.execute(select(OrderEvent).where(OrderEvent.order_id == order["id"]))
    ).scalar_one()
    assert (event.from_status, event.to_status, event.channel) == (None, "awaiting_address", "rest")
    assert event.actor == f"customer:{stored.customer_id}"
    assert event.correlation_id == response.headers["X-Correlation-ID"]


async def test_an_address_from_wallet_pool_makes_the_order_await_the_deposit(
    order_api: OrderApiRunner,
    db_session: AsyncSession,
    wallet_pool_stand_in: WalletPoolStandIn,
    unique_email: str,
) -> None:
    async with order_api(session=db_session, wallet_pool=PeerSettings(url=wallet_pool_stand_in.url)) as api:
        first = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
        second = (await api.client.post("/v1/orders", json=order_body(unique_email, amount="2"))).json()
    assert first["status"] == "awaiting_deposit"
    assert first["deposit_address"] == BTC_DEPOSIT
    assert second["status"] == "queued"
    assert second["queue_position"] == 1
    assert second["estimated_wait_seconds"] == 90
    assert [r["priority"] for r in wallet_pool_stand_in.requests] == ["normal", "vip"]
    assert [r["network"] for r in wallet_pool_stand_in.requests] == ["bitcoin", "bitcoin"]
    created = (
        (await db_session.execute(select(outbox.c.payload).where(outbox.c.event_type == "order.created")))
        .scalars()
        .all()
    )
    assert {(p["order_id"], p["status"]) for p in created} == {
        (first["id"], "awaiting_deposit"),
        (second["id"], "queued"),
    }


async def test_idempotency_key_replays_the_same_answer_and_refuses_another_body(
    api: OrderApi, db_session: AsyncSession, unique_email: str
) -> None:
    headers = {"Idempotency-Key": "checkout-42"}
    first = await api.client.post("/v1/orders", json=order_body(unique_email), headers=headers)
    again = await api.client.post("/v1/orders", json=order_body(unique_email), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()  # same order, same session token
    assert await count(db_session, Order) == 1
    other = await api.client.post("/v1/orders", json=order_body(unique_email, amount="0.06"), headers=headers)
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert await count(db_session, Order) == 1


async def test_a_customer_holds_at_most_three_open_orders(
    api: OrderApi, db_session: AsyncSession, unique_email: str
) -> None:
    for _ in range(3):
        assert (await api.client.post("/v1/orders", json=order_body(unique_email))).status_code == 201
    refused = await api.client.post("/v1/orders", json=order_body(unique_email.upper()))
    assert refused.status_code == 409
    assert refused.json()["code"] == "open_order_limit_reached"
    assert await count(db_session, Order) == 3


async def test_the_per_ip_limit_trusts_x_forwarded_for_only_from_trusted_proxies(
    order_api: OrderApiRunner, db_session: AsyncSession
) -> None:
    async with order_api(
        session=db_session, max_open_orders_per_ip=2, trusted_proxies=["127.0.0.0/8"]
    ) as api:
        for n, client_ip in enumerate(["203.0.113.1", "203.0.113.1", "203.0.113.2"]):
            response = await api.client.post(
                "/v1/orders", json=order_body(f"ip{n}@example.com"), headers={"X-Forwarded-For": client_ip}
            )
            assert response.status_code == 201, response.text
        refused = await api.client.post(
            "/v1/orders", json=order_body("ip9@example.com"), headers={"X-Forwarded-For": "203.0.113.1"}
        )
        assert refused.status_code == 409
    stored = (await db_session.execute(select(Order.client_ip))).scalars().all()
    assert sorted(stored) == ["203.0.113.1", "203.0.113.1", "203.0.113.2"]


async def test_a_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(
    order_api: OrderApiRunner, db_session: AsyncSession
) -> None:
    async with order_api(session=db_session) as api:
        response = await api.client.post(
            "/v1/orders", json=order_body("spoof@example.com"), headers={"X-Forwarded-For": "198.51.100.7"}
        )
    assert response.status_code == 201
    assert (await db_session.execute(select(Order.client_ip))).scalar_one() == "127.0.0.1"


@pytest.mark.parametrize("storage", ["memory", "redis"])
async def test_order_creation_is_rate_limited_per_client_with_retry_after(
    order_api: OrderApiRunner, db_session: AsyncSession, redis_url: str, storage: str
) -> None:
    redis = {"redis_url": redis_url} if storage == "redis" else {}
    async with order_api(session=db_session, order_rate_limit="2/minute", **redis) as api:
        statuses = [
            (await api.client.post("/v1/orders", json=order_body(f"rl{n}@example.com"))).status_code
            for n in range(2)
        ]
        limited = await api.client.post("/v1/orders", json=order_body("rl9@example.com"))
    assert statuses == [201, 201]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert await count(db_session, Order) == 2


async def test_only_the_owner_reads_an_order_and_listing_needs_a_full_session(
    api: OrderApi, unique_email: str
) -> None:
    mine = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
    theirs = (await api.client.post("/v1/orders", json=order_body("other." + unique_email))).json()
    auth = {"Authorization": f"Bearer {mine['session_token']}"}
    read = await api.client.get(f"/v1/orders/{mine['id']}", headers=auth)
    assert read.status_code == 200
    assert read.json()["payout_address"] == PAYOUT_USDT
    assert (await api.client.get(f"/v1/orders/{theirs['id']}", headers=auth)).status_code == 404
    assert (await api.client.get("/v1/orders/not-a-uuid", headers=auth)).status_code == 404
    assert (await api.client.get(f"/v1/orders/{mine['id']}")).status_code == 401
    listing = await api.client.get("/v1/orders", headers=auth)
    assert listing.status_code == 403
    assert listing.json()["code"] == "full_session_required"


async def test_cancelling_releases_the_address_through_the_outbox(
    api: OrderApi, db_session: AsyncSession, unique_email: str
) -> None:
    order = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
    auth = {"Authorization": f"Bearer {order['session_token']}"}
    stale = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers={**auth, "If-Match": "7"})
    assert stale.status_code == 412
    weak = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers={**auth, "If-Match": 'W/"1"'})
    assert weak.status_code == 422
    assert [e["field"] for e in weak.json()["errors"]] == ["If-Match"]
    # the entity tag, as RFC 9110 writes If-Match (and generated clients send it: a string)
    cancelled = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers={**auth, "If-Match": '"1"'})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["version"] == 2
    release = (
        await db_session.execute(
            select(outbox.c.destination, outbox.c.payload).where(outbox.c.event_type == "order.closed")
        )
    ).one()
    assert release.destination == "wallet-pool"
    assert release.payload["order_id"] == order["id"]
    again = await api.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert again.json()["code"] == "order_transition_not_allowed"


async def test_wallet_assigned_moves_a_queued_order_to_awaiting_deposit_once(
    api: OrderApi, api_keys: ApiKeys, unique_email: str
) -> None:
    order = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
    envelope = {
        "id": "6f1c2b7e-0000-4000-8000-000000000001",
        "type": "wallet.assigned",
        "source": "wallet-pool",
        "occurred_at": "2026-01-01T00:00:00Z",
        "aggregate_id": order["id"],
        "payload": {"order_id": order["id"], "currency": "BTC", "network": "bitcoin", "address": BTC_DEPOSIT},
    }
    headers = {"Authorization": f"Bearer {api_keys.wallet_pool}"}
    first = await api.client.post("/v1/events", json=envelope, headers=headers)
    duplicate = await api.client.post("/v1/events", json=envelope, headers=headers)
    assert first.json()["status"] == "processed"
    assert duplicate.json()["status"] == "duplicate"
    read = await api.client.get(
        f"/v1/orders/{order['id']}", headers={"Authorization": f"Bearer {order['session_token']}"}
    )
    assert read.json()["status"] == "awaiting_deposit"
    assert read.json()["deposit_address"] == BTC_DEPOSIT
    assert read.json()["version"] == 2


async def test_overdue_orders_expire_and_release_their_address(
    order_api: OrderApiRunner, own_database_url: str, unique_email: str
) -> None:
    async with order_api(database_url=own_database_url, sweep_seconds=0.1) as api:
        order = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
        fresh = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker.begin() as session:
            await session.execute(update(Order).where(Order.id == order["id"]).values(expires_at=utcnow()))

        async def statuses() -> dict[str, str]:
            async with database.sessionmaker() as session:
                return dict((await session.execute(select(Order.id, Order.status))).tuples().all())

        await eventually(
            statuses, until=lambda found: found[order["id"]] == "expired", message="expiry sweeper"
        )
        async with database.sessionmaker() as session:
            closed = (
                (await session.execute(select(outbox.c.payload).where(outbox.c.event_type == "order.closed")))
                .scalars()
                .all()
            )
            actors = (
                (await session.execute(select(OrderEvent.actor).where(OrderEvent.to_status == "expired")))
                .scalars()
                .all()
            )
        assert (await statuses())[fresh["id"]] == "awaiting_address"
        assert await expire_overdue_orders(database=database, protection=context_of(api.app).protection) == 0
    assert [p["order_id"] for p in closed] == [order["id"]]
    assert actors == ["system:expiry"]


async def test_the_reconciler_allocates_orders_accepted_during_an_outage(
    order_api: OrderApiRunner,
    own_database_url: str,
    wallet_pool_stand_in: WalletPoolStandIn,
    unique_email: str,
) -> None:
    async with order_api(database_url=own_database_url, sweep_seconds=3600) as api:
        order = (await api.client.post("/v1/orders", json=order_body(unique_email))).json()
        assert order["status"] == "awaiting_address"
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker.begin() as session:  # old enough for the reconciler's grace period
            await session.execute(update(Order).values(created_at=utcnow() - timedelta(minutes=1)))
    async with order_api(
        database_url=own_database_url,
        sweep_seconds=0.1,
        wallet_pool=PeerSettings(url=wallet_pool_stand_in.url),
    ) as api:
        database = service_state(api.app).runtime.database

        async def stored() -> Order:
            async with database.sessionmaker() as session:
                return (await session.execute(select(Order))).scalar_one()

        settled = await eventually(
            stored, until=lambda o: o.status == "awaiting_deposit", message="reconciled"
        )
        assert (
            await reconcile_pending_allocations(
                database=database,
                wallet_pool=context_of(api.app).wallet_pool,
                settings=api.settings,
                protection=context_of(api.app).protection,
            )
            == 0
        )
        async with database.sessionmaker() as session:
            announced = (
                await session.execute(
                    select(outbox.c.event_type, outbox.c.payload).order_by(outbox.c.created_at)
                )
            ).all()
    assert settled.deposit_address == BTC_DEPOSIT
    assert settled.allocation_state == AllocationState.ALLOCATED
    assert len(wallet_pool_stand_in.requests) == 1
    # The customer was told at creation that the address would follow; now they are told it is ready.
    assert [(t, p["status"], p.get("from_status")) for t, p in announced if t.startswith("order.")] == [
        ("order.created", "awaiting_address", None),
        ("order.status_changed", "awaiting_deposit", "awaiting_address"),
    ]


async def test_the_order_with_its_session_token_and_payout_address_is_never_stored(
    api: OrderApi, unique_email: str
) -> None:
    """Answers with a token or personal data carry ``Cache-Control: no-store`` (and the security headers):
    no browser or proxy keeps them."""
    created = await api.client.post("/v1/orders", json=order_body(unique_email))
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["session_token"].startswith("cs_")
    auth = {"Authorization": f"Bearer {order['session_token']}"}
    read = await api.client.get(f"/v1/orders/{order['id']}", headers=auth)
    assert read.json()["payout_address"] == PAYOUT_USDT
    for response in (created, read):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


def open_orders_gauge(exposition: str) -> dict[str, float]:
    (family,) = [f for f in text_string_to_metric_families(exposition) if f.name == "orders_open"]
    return {sample.labels["status"]: sample.value for sample in family.samples}


async def test_metrics_count_the_open_orders_by_status(order_api: OrderApiRunner) -> None:
    """On-call sees orders piling up in a status (waiting for an address while wallet-pool is down) on
    ``/metrics``, from the database, so every replica reports the desk's figures."""
    async with order_api() as api:
        before = open_orders_gauge((await api.client.get("/metrics")).text)
        assert set(before) == {"awaiting_address", "queued", "awaiting_deposit", "in_progress"}
        for _ in range(2):
            created = await api.client.post(
                "/v1/orders", json=order_body(f"gauge-{uuid.uuid4()}@example.com")
            )
            assert created.status_code == 201, created.text

        async def scraped() -> dict[str, float]:
            return open_orders_gauge((await api.client.get("/metrics")).text)

        # a scrape within a second of the last one shares its figures
        after = await eventually(
            scraped,
            until=lambda figures: figures["awaiting_address"] == before["awaiting_address"] + 2,
            within=10.0,
            message="the new orders are counted",
        )
    assert after["awaiting_address"] == before["awaiting_address"] + 2
    assert {status: after[status] - before[status] for status in after if status != "awaiting_address"} == {
        "queued": 0,
        "awaiting_deposit": 0,
        "in_progress": 0,
    }
