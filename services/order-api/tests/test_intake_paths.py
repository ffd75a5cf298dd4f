"""The two intake paths of ``POST /v1/orders`` leave the same record.

A new customer's order on PostgreSQL takes the fast path (one statement before the call to wallet-pool, one
after: ``orders.intake_persistence.create_for_new_customer`` and ``settle_new_order``); a returning customer's order,
and every order on the embedded SQLite database, take the general path. Whichever ran, the order row, its
history, the ``order.created`` announcement (with the customer's email sealed, masked once delivered) and the
answer stored under the ``Idempotency-Key`` must be the same. These tests run order-api against a real
database of its own (the fast path commits statement by statement, outside any test transaction), with
wallet-pool and the notifier played by stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from order_api.auth.models import CustomerSession
from order_api.auth.service import SESSION_TOKEN_PREFIX
from order_api.context import context_of
from order_api.customers.models import Customer
from order_api.customers.service import EMAIL_CONTEXT
from order_api.db import outbox
from order_api.orders import intake_persistence
from order_api.orders.models import IdempotencyKey, Order, OrderEvent
from order_api.protection import DataProtection
from order_api.testing import PAYOUT_USDT, ApiKeys, OrderApi, OrderApiRunner, StandInReceiver, order_body
from servicekit.db import resolve_database_url
from servicekit.migrations import upgrade
from servicekit.sealing import open_sealed_payload
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import TEST_EVENT_KEYRING, eventually, serve_stand_in, service_dir

if TYPE_CHECKING:
    import httpx


BTC_DEPOSITS = [
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
]
ANY_ID = "<id>"


@dataclass
class WalletPool:
    """wallet-pool's ``POST /v1/allocations``: addresses while it has some, then a queue place. ``before_answer``
    runs first (a test makes something happen while order-api waits for the answer)."""

    addresses: list[str]
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    position: int = 1
    """The queue place every queued answer gives (the same for every order, so two orders compare equal)."""
    before_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    taken: str | None = None
    """An address another open order holds, handed out to every order while set."""
    about_another_order: bool = False
    """Every answer names another order (an answer order-api cannot use)."""


@pytest.fixture
async def wallet_pool() -> AsyncIterator[WalletPool]:
    stand_in = WalletPool(addresses=list(BTC_DEPOSITS))

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        stand_in.requests.append(body)
        if stand_in.before_answer is not None:
            await stand_in.before_answer(body)
        base = {"order_id": body["order_id"], "currency": body["currency"], "network": body["network"]}
        if stand_in.about_another_order:
            base["order_id"] = str(uuid.uuid4())
        if stand_in.taken is not None:
            return web.json_response({**base, "status": "allocated", "address": stand_in.taken}, status=201)
        if stand_in.addresses:
            address = stand_in.addresses.pop(0)
            return web.json_response({**base, "status": "allocated", "address": address}, status=201)
        answer = {**base, "status": "queued", "position": stand_in.position, "estimated_wait_seconds": 90.4}
        return web.json_response(answer, status=202)

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    async with serve_stand_in(app) as url:
        stand_in.url = url
        yield stand_in


@dataclass
class FastPathSpy:
    """How often the fast path was tried, and how often it took the order (``created``)."""

    tried: int = 0
    created: int = 0


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> FastPathSpy:
    spy = FastPathSpy()
    real = intake_persistence.create_for_new_customer

    async def counted(*args: Any, **kwargs: Any) -> Any:
        spy.tried += 1
        issued = await real(*args, **kwargs)
        spy.created += issued is not None
        return issued

    monkeypatch.setattr(intake_persistence, "create_for_new_customer", counted)
    return spy


@dataclass(frozen=True)
class Record:
    """Everything intake stored for one order, with ids, keys and instants replaced by what they must be."""

    order: dict[str, Any]
    history: list[dict[str, Any]]
    announcement: dict[str, Any]
    idempotent_answer: dict[str, Any] | None


async def record_of(api: OrderApi, *, order_id: str, email: str, key: str | None) -> Record:
    sessions: async_sessionmaker[Any] = service_state(api.app).runtime.database.sessionmaker
    protection: DataProtection = context_of(api.app).protection
    async with sessions() as session:
        order = (await session.execute(select(Order).where(Order.id == order_id))).scalar_one()
        customer = (
            await session.execute(select(Customer).where(Customer.id == order.customer_id))
        ).scalar_one()
        history = (
            (
                await session.execute(
                    select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
                )
            )
            .scalars()
            .all()
        )
        [announcement] = (
            await session.execute(
                select(outbox).where(
                    outbox.c.aggregate_id == order_id, outbox.c.event_type == "order.created"
                )
            )
        ).mappings()
        stored = None
        if key is not None:
            stored = (
                await session.execute(
                    select(IdempotencyKey).where(
                        IdempotencyKey.owner == protection.email_index(email), IdempotencyKey.key == key
                    )
                )
            ).scalar_one()
    assert protection.open(customer.email_sealed, context=EMAIL_CONTEXT) == email
    assert (
        protection.open(order.payout_address_sealed, context=intake_persistence.PAYOUT_CONTEXT) == PAYOUT_USDT
    )
    assert order.session_id is not None
    assert order.created_at <= order.updated_at <= order.announced_at
    assert order.expires_at is not None
    if order.status == "awaiting_deposit":
        assert order.address_assigned_at is not None
        lifetime = order.expires_at - order.address_assigned_at
        assert lifetime == timedelta(minutes=api.settings.currencies["BTC"].awaiting_deposit_minutes)
    else:
        assert order.address_assigned_at is None
        assert order.expires_at - order.created_at == timedelta(
            minutes=api.settings.currencies["BTC"].queued_minutes
        )

    columns = {c.key: getattr(order, c.key) for c in Order.__table__.columns}
    for name in ("id", "customer_id", "session_id", "payout_address_sealed", "created_at", "updated_at"):
        columns.pop(name)
    for name in ("expires_at", "address_assigned_at", "announced_at"):
        columns[name] = columns[name] is not None

    def who(actor: str) -> str:
        return actor.replace(customer.id, ANY_ID)

    assert all(row.correlation_id for row in history)
    assert announcement["destination"] == "notifier"
    assert announcement["delivered_at"] is not None
    assert announcement["attempts"] == 1
    payload = dict(announcement["payload"])
    assert (payload.pop("order_id"), payload.pop("customer_id")) == (order.id, customer.id)
    assert payload.pop("expires_at") == order.expires_at.isoformat()

    answer = None
    if stored is not None:
        assert stored.response_status == 201
        assert stored.completed_at is not None
        answer = json.loads(
            protection.open(stored.response_sealed, context=intake_persistence.IDEMPOTENCY_CONTEXT)
        )
        assert answer["id"] == order.id
    return Record(
        order=columns,
        history=[
            {
                "from_status": row.from_status,
                "to_status": row.to_status,
                "actor": who(row.actor),
                "channel": row.channel,
                "details": row.details,
            }
            for row in history
        ],
        announcement=payload,
        idempotent_answer=answer,
    )


async def delivered_announcement(api: OrderApi, order_id: str) -> bool:
    async with service_state(api.app).runtime.database.sessionmaker() as session:
        delivered_at = await session.scalar(
            select(outbox.c.delivered_at).where(
                outbox.c.aggregate_id == order_id, outbox.c.event_type == "order.created"
            )
        )
    return delivered_at is not None


async def place(api: OrderApi, notifier: StandInReceiver, *, email: str) -> tuple[dict[str, Any], Record]:
    """An order as a frontend places it (with an ``Idempotency-Key``, then a retry of the same request), and
    what was stored once its announcement reached the notifier."""
    key = f"checkout-{uuid.uuid4().hex}"
    first = await api.client.post("/v1/orders", json=order_body(email), headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    created: dict[str, Any] = first.json()
    retry = await api.client.post("/v1/orders", json=order_body(email), headers={"Idempotency-Key": key})
    assert (retry.status_code, retry.json()) == (201, created)  # replayed as it was first answered
    assert created["session_token"].startswith(SESSION_TOKEN_PREFIX)

    await eventually(lambda: delivered_announcement(api, created["id"]), message="order.created delivered")
    [envelope] = [e for e in notifier.of_type("order.created") if e["aggregate_id"] == created["id"]]
    # The notifier gets the address sealed with the event keys (never in clear on the wire or in the outbox) ...
    assert "customer_email" not in envelope["payload"]
    assert email.lower() not in json.dumps(envelope["payload"]).lower()
    opened = open_sealed_payload(
        TEST_EVENT_KEYRING, envelope["payload"], event_type="order.created", aggregate_id=created["id"]
    )
    assert opened["customer_email"] == email
    record = await record_of(api, order_id=created["id"], email=email, key=key)
    assert record.announcement["sealed"] == "***"  # ... and the outbox keeps even that only until then
    assert record.idempotent_answer == created
    return created, record


def comparable(created: dict[str, Any], record: Record) -> dict[str, Any]:
    """The record with what differs between any two orders (ids, instants, the address handed out, the
    session token) replaced by placeholders."""
    answer = dict(record.idempotent_answer or {})
    for name in ("id", "session_token", "created_at", "updated_at", "expires_at"):
        answer[name] = ANY_ID if answer.get(name) is not None else None
    text = json.dumps(
        {
            "order": record.order,
            "history": record.history,
            "announcement": record.announcement,
            "answer": answer,
        },
        default=str,
        sort_keys=True,
    )
    if created["deposit_address"]:
        text = text.replace(created["deposit_address"], "<address>")
    result: dict[str, Any] = json.loads(text)
    return result


async def hold_an_address(api: OrderApi, wallet_pool: WalletPool) -> None:
    """An open order holds the next address of the pool, and wallet-pool hands that address out again to
    every order from now on (an answer that cannot be used: the database's unique index refuses it)."""
    held = await api.client.post("/v1/orders", json=order_body(f"holder.{uuid.uuid4().hex[:8]}@example.com"))
    assert held.json()["status"] == "awaiting_deposit", held.text
    wallet_pool.taken = held.json()["deposit_address"]


@pytest.mark.parametrize("answer", ["allocated", "queued", "unusable", "taken"])
async def test_a_new_customers_fast_path_and_the_general_path_store_the_same_order(
    answer: str,
    order_api: OrderApiRunner,
    own_database_url: str,
    wallet_pool: WalletPool,
    notifier_stand_in: StandInReceiver,
    fast_path: FastPathSpy,
    tmp_path: Path,
) -> None:
    """Each of wallet-pool's answers: an address, a queue place, an answer about another order (none usable in
    time: the order awaits its address) and an address another open order holds (refused by the unique index,
    which the fast path's settling statement meets as a failed statement, the general path in a savepoint)."""
    if answer == "queued":
        wallet_pool.addresses.clear()
    wallet_pool.about_another_order = answer == "unusable"
    peers: dict[str, Any] = {
        "wallet_pool": PeerSettings(url=wallet_pool.url),
        "notifier": PeerSettings(url=notifier_stand_in.url),
        "outbox_poll_seconds": 0.05,
    }
    returning = f"returning.{uuid.uuid4().hex[:8]}@example.com"
    async with order_api(database_url=own_database_url, **peers) as api:
        assert service_state(api.app).runtime.database.engine.dialect.name == "postgresql"
        if answer == "taken":
            await hold_an_address(api, wallet_pool)
            fast_path.tried = fast_path.created = 0  # the holder's order is no part of the comparison
        new, new_record = await place(api, notifier_stand_in, email=f"new.{uuid.uuid4().hex[:8]}@example.com")
        # Tried for the order and for its retry, which found the email known and replayed the stored answer.
        assert (fast_path.tried, fast_path.created) == (2, 1)
        await place(api, notifier_stand_in, email=returning)  # makes them a customer (fast path too)
        if answer == "allocated":
            wallet_pool.addresses.insert(0, BTC_DEPOSITS[-1])
        again, again_record = await place(api, notifier_stand_in, email=returning)
        assert (fast_path.tried, fast_path.created) == (6, 2)  # a known email: the general path took it

    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="order-api")
    await asyncio.to_thread(upgrade, service_dir("order-api"), url=url)
    if answer == "allocated":
        wallet_pool.addresses.insert(0, BTC_DEPOSITS[-1])
    async with order_api(database_url=None, var_dir=var_dir, **peers) as api:
        assert service_state(api.app).runtime.database.engine.dialect.name == "sqlite"
        if answer == "taken":
            wallet_pool.taken = None
            await hold_an_address(api, wallet_pool)
        embedded, embedded_record = await place(
            api, notifier_stand_in, email=f"embedded.{uuid.uuid4().hex[:8]}@example.com"
        )
        assert fast_path.tried == 6  # never tried on SQLite

    expected = comparable(new, new_record)
    assert comparable(again, again_record) == expected
    assert comparable(embedded, embedded_record) == expected
    if answer == "allocated":
        assert expected["order"]["status"] == "awaiting_deposit"
        assert [(h["from_status"], h["to_status"]) for h in expected["history"]] == [
            (None, "awaiting_address"),
            ("awaiting_address", "awaiting_deposit"),
        ]
        assert expected["history"][1]["details"] == {"deposit_address": "<address>"}
    elif answer == "queued":
        assert (expected["order"]["status"], expected["order"]["queue_position"]) == ("queued", 1)
        assert expected["order"]["estimated_wait_seconds"] == 90
        assert expected["order"]["version"] == 2
        assert [(h["from_status"], h["to_status"]) for h in expected["history"]] == [
            (None, "awaiting_address"),
            ("awaiting_address", "queued"),
        ]
    else:  # nothing of the answer is stored: the order awaits its address, the reconciler asks again
        assert (expected["order"]["status"], expected["order"]["allocation_state"]) == (
            "awaiting_address",
            "pending",
        )
        assert (expected["order"]["deposit_address"], expected["order"]["version"]) == (None, 1)
        assert expected["answer"]["deposit_address"] is None
        assert [(h["from_status"], h["to_status"]) for h in expected["history"]] == [
            (None, "awaiting_address")
        ]
    assert expected["history"][0]["actor"] == f"customer:{ANY_ID}"
    assert expected["announcement"]["_redact_after_delivery"] == ["sealed"]
    assert expected["announcement"]["status"] == expected["order"]["status"]


async def test_an_order_changed_before_its_settling_statement_is_settled_as_it_is_now(
    order_api: OrderApiRunner,
    own_database_url: str,
    wallet_pool: WalletPool,
    notifier_stand_in: StandInReceiver,
    fast_path: FastPathSpy,
    api_keys: ApiKeys,
    unique_email: str,
) -> None:
    # While order-api waits for wallet-pool's answer (a queue place), wallet-pool's wallet.assigned event for
    # the order arrives first and moves it to awaiting_deposit: the fast path's second statement finds the
    # order changed, writes nothing, and the general code settles the answer on the order as it now is.
    wallet_pool.addresses.clear()
    async with order_api(
        database_url=own_database_url,
        wallet_pool=PeerSettings(url=wallet_pool.url),
        notifier=PeerSettings(url=notifier_stand_in.url),
        outbox_poll_seconds=0.05,
    ) as api:

        async def assigned_first(body: dict[str, Any]) -> None:
            event = {
                "id": str(uuid.uuid4()),
                "type": "wallet.assigned",
                "source": "wallet-pool",
                "occurred_at": "2026-01-01T00:00:00Z",
                "aggregate_id": body["order_id"],
                "payload": {**body, "address": BTC_DEPOSITS[0]},
            }
            headers = {"Authorization": f"Bearer {api_keys.wallet_pool}"}
            receipt = await api.client.post("/v1/events", json=event, headers=headers)
            assert receipt.json()["status"] == "processed", receipt.text

        wallet_pool.before_answer = assigned_first
        created, record = await place(api, notifier_stand_in, email=unique_email)
        assert (fast_path.tried, fast_path.created) == (2, 1)  # the order, then its retry

    assert (created["status"], created["deposit_address"], created["version"]) == (
        "awaiting_deposit",
        BTC_DEPOSITS[0],
        2,
    )
    assert created["queue_position"] is None
    assert record.order["status"] == "awaiting_deposit"
    assert record.order["allocation_state"] == "allocated"
    assert (record.order["queue_position"], record.order["version"]) == (None, 2)
    assert [(h["from_status"], h["to_status"]) for h in record.history] == [
        (None, "awaiting_address"),
        ("awaiting_address", "awaiting_deposit"),
    ]
    assert record.announcement["status"] == "awaiting_deposit"
    assert record.announcement["deposit_address"] == BTC_DEPOSITS[0]
    assert len(notifier_stand_in.of_type("order.created")) == 1


async def test_the_per_ip_limit_holds_on_the_fast_path_and_a_refused_order_writes_nothing(
    order_api: OrderApiRunner,
    own_database_url: str,
    wallet_pool: WalletPool,
    fast_path: FastPathSpy,
) -> None:
    async with order_api(
        database_url=own_database_url,
        wallet_pool=PeerSettings(url=wallet_pool.url),
        max_open_orders_per_ip=2,
        trusted_proxies=["127.0.0.0/8"],
    ) as api:
        client: httpx.AsyncClient = api.client
        crowded = {"X-Forwarded-For": "203.0.113.9"}
        for n in range(2):
            placed = await client.post(
                "/v1/orders", json=order_body(f"ip{n}.{uuid.uuid4().hex}@example.com"), headers=crowded
            )
            assert placed.status_code == 201, placed.text
        refused_email = f"refused.{uuid.uuid4().hex}@example.com"
        refused = await client.post(
            "/v1/orders",
            json=order_body(refused_email),
            headers={**crowded, "Idempotency-Key": "refused-checkout"},
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["limit"] == 2
        elsewhere = await client.post(
            "/v1/orders",
            json=order_body(f"other.{uuid.uuid4().hex}@example.com"),
            headers={"X-Forwarded-For": "203.0.113.10"},
        )
        assert elsewhere.status_code == 201
        assert (fast_path.tried, fast_path.created) == (4, 3)
        assert len(wallet_pool.requests) == 3  # the refused order never reached wallet-pool

        protection: DataProtection = context_of(api.app).protection
        async with service_state(api.app).runtime.database.sessionmaker() as session:
            customers = await session.scalar(
                select(func.count()).where(Customer.email_index == protection.email_index(refused_email))
            )
            keys = await session.scalar(select(func.count()).select_from(IdempotencyKey))
            by_ip = (await session.execute(select(Order.client_ip).order_by(Order.client_ip))).scalars().all()
            sessions = await session.scalar(select(func.count()).select_from(CustomerSession))
            events = await session.scalar(select(func.count()).select_from(OrderEvent))
    assert customers == 0
    assert keys == 0
    assert by_ip == ["203.0.113.10", "203.0.113.9", "203.0.113.9"]
    assert sessions == 3
    assert events == 6  # awaiting_address, then awaiting_deposit: the three accepted orders' history only


async def test_a_full_network_refuses_a_new_and_a_returning_customer_alike_and_writes_nothing(
    order_api: OrderApiRunner,
    own_database_url: str,
    wallet_pool: WalletPool,
    fast_path: FastPathSpy,
    tmp_path: Path,
) -> None:
    """The cap of open orders per client network, met by a new customer (the fast path's first statement)
    and by a returning one (the general path, under the customer's row lock), on PostgreSQL and on SQLite:
    the same ``409`` naming the limit, and nothing stored of either refused order, not even its key."""
    settings: dict[str, Any] = {
        "wallet_pool": PeerSettings(url=wallet_pool.url),
        "max_open_orders_per_ip": 1,
        "trusted_proxies": ["127.0.0.0/8"],
    }
    crowded = {"X-Forwarded-For": "203.0.113.20"}

    async def refusals(api: OrderApi) -> tuple[list[dict[str, Any]], tuple[int, int, int]]:
        returning = f"returning.{uuid.uuid4().hex[:8]}@example.com"
        first = await api.client.post("/v1/orders", json=order_body(returning), headers=crowded)
        assert first.status_code == 201, first.text
        refused = []
        for email in (f"new.{uuid.uuid4().hex[:8]}@example.com", returning):
            answer = await api.client.post(
                "/v1/orders", json=order_body(email), headers={**crowded, "Idempotency-Key": "full-network"}
            )
            assert answer.status_code == 409, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            refused.append(answer.json())
        async with service_state(api.app).runtime.database.sessionmaker() as session:
            stored = (
                await session.scalar(select(func.count()).select_from(Order)),
                await session.scalar(select(func.count()).select_from(Customer)),
                await session.scalar(select(func.count()).select_from(IdempotencyKey)),
            )
        return refused, (int(stored[0] or 0), int(stored[1] or 0), int(stored[2] or 0))

    async with order_api(database_url=own_database_url, **settings) as api:
        on_postgres, stored = await refusals(api)
        assert (fast_path.tried, fast_path.created) == (
            3,
            1,
        )  # the returning customer's refusal: general path
    assert stored == (1, 1, 0)

    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="order-api")
    await asyncio.to_thread(upgrade, service_dir("order-api"), url=url)
    async with order_api(database_url=None, var_dir=var_dir, **settings) as api:
        on_sqlite, stored = await refusals(api)
    assert stored == (1, 1, 0)

    [expected] = {json.dumps(problem, sort_keys=True) for problem in on_postgres + on_sqlite}
    assert json.loads(expected) | {"instance": None} == {
        "type": json.loads(expected)["type"],
        "title": "Too many open orders",
        "status": 409,
        "detail": "Too many open orders from this network address.",
        "code": "open_order_limit_reached",
        "limit": 1,
        "instance": None,
    }
    assert len(wallet_pool.requests) == 2  # only the two accepted orders reached wallet-pool


def _texts(value: Any) -> list[str]:
    """The text a stored value holds (strings, and the strings inside JSON), lower-cased."""
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, dict):
        return [text for item in value.items() for part in item for text in _texts(part)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _texts(item)]
    return []


async def test_no_table_and_no_outbox_event_holds_a_customers_data_in_clear(
    order_api: OrderApiRunner, own_database_url: str, wallet_pool: WalletPool
) -> None:
    """Both intake paths, a cancellation and a sign-in code, with the notifier unreachable (the events stay
    in the outbox): every row of every table of order-api's schema, read back, holds none of it in clear."""
    email = f"Rest.{uuid.uuid4().hex[:8]}@Example.com"
    async with order_api(database_url=own_database_url, wallet_pool=PeerSettings(url=wallet_pool.url)) as api:
        first = await api.client.post("/v1/orders", json=order_body(email))  # a new customer: the fast path
        second = await api.client.post(
            "/v1/orders", json=order_body(email)
        )  # a returning one: the general path
        assert (first.status_code, second.status_code) == (201, 201), (first.text, second.text)
        cancelled = await api.client.post(
            f"/v1/orders/{first.json()['id']}/cancel",
            headers={"Authorization": f"Bearer {first.json()['session_token']}"},
        )
        assert cancelled.status_code == 200, cancelled.text
        assert (await api.client.post("/v1/auth/email-code", json={"email": email})).status_code == 202

        database = service_state(api.app).runtime.database
        async with database.sessionmaker() as session:
            events = (await session.execute(select(outbox).where(outbox.c.destination == "notifier"))).all()
            rows = [
                row
                for table in outbox.metadata.sorted_tables
                for row in (await session.execute(select(table))).all()
            ]
    opened = [
        open_sealed_payload(
            TEST_EVENT_KEYRING, e.payload, event_type=e.event_type, aggregate_id=e.aggregate_id
        )
        for e in events
    ]
    # What the notifier needs still travels: the address of every announcement, and the code.
    assert {
        (e.event_type, o.get("customer_email") or o.get("email")) for e, o in zip(events, opened, strict=True)
    } >= {
        ("order.created", email),
        ("order.status_changed", email),
        ("customer.email_code_requested", email),
    }
    [code] = [o["code"] for o in opened if "code" in o]
    stored = [text for row in rows for value in row for text in _texts(value)]
    assert stored
    for secret in (email.lower(), PAYOUT_USDT.lower(), code):
        assert not [text for text in stored if secret in text], secret
