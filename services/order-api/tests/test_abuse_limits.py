"""Abuse limits that hold: per-client limits count an IPv6 client by its /64 (an IPv4 client by its address,
IPv4-mapped forms included), and the open-order cap per customer cannot be filled by someone who merely
knows the customer's email.

The caps are counted in the database, so these tests run on PostgreSQL (a database of the test's own, where
a new customer's order takes the hand-written fast path) and on the embedded SQLite default (the general
path), committing for real. Clients come through a trusted proxy that names them in ``X-Forwarded-For``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest
from aiohttp import web
from alembic import command
from sqlalchemy import select

from order_api.auth.service import open_full_session
from order_api.context import context_of
from order_api.customers.service import find_or_create_customer
from order_api.db import SCHEMA
from order_api.orders.models import Order
from order_api.protection import DataProtection
from order_api.testing import OrderApi, OrderApiRunner, order_body
from servicekit.migrations import alembic_config
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import migrate_embedded, migrated_database, serve_stand_in, service_dir

ONE_64 = ipaddress.IPv6Network("2001:db8:1:2::/64")
PROXY = ["127.0.0.0/8"]


def new_email(label: str) -> str:
    return f"{label}.{uuid.uuid4().hex[:10]}@example.com"


def addresses_of(network: ipaddress.IPv6Network, count: int) -> list[str]:
    """``count`` different addresses spread over ``network`` (as one subscriber's devices pick them)."""
    step = network.num_addresses // (count + 1)
    return [str(network[step * (n + 1) + n]) for n in range(count)]


@pytest.fixture
async def wallet_pool() -> AsyncIterator[str]:
    """wallet-pool's ``POST /v1/allocations``, answered at once: every order waits first in the queue."""

    async def queue(request: web.Request) -> web.Response:
        asked = await request.json()
        place = {name: asked[name] for name in ("order_id", "currency", "network")}
        answer = {**place, "status": "queued", "position": 1, "estimated_wait_seconds": 60.0}
        return web.json_response(answer, status=202)

    app = web.Application()
    app.router.add_post("/v1/allocations", queue)
    async with serve_stand_in(app) as url:
        yield url


@dataclass
class Desk:
    """order-api behind a trusted proxy, committing for real."""

    api: OrderApi

    async def order(self, email: str, client: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"X-Forwarded-For": client}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.api.client.post("/v1/orders", json=order_body(email), headers=headers)
        body: dict[str, Any] = response.json()
        return response.status_code, body

    async def stored_clients(self) -> list[str]:
        async with service_state(self.api.app).runtime.database.sessionmaker() as session:
            return list((await session.execute(select(Order.client_ip).order_by(Order.created_at))).scalars())

    async def proven_session(self, email: str) -> str:
        """A full session of the customer of ``email``, as ``POST /v1/auth/verify`` opens it."""
        protection: DataProtection = context_of(self.api.app).protection
        async with service_state(self.api.app).runtime.database.sessionmaker.begin() as session:
            customer = await find_or_create_customer(
                session=session, protection=protection, email=email, locale="en"
            )
            issued = await open_full_session(
                session=session, settings=self.api.settings, customer_id=customer.id
            )
        return issued.token


class DeskRunner(Protocol):
    def __call__(self, **overrides: Any) -> AbstractAsyncContextManager[Desk]: ...


@pytest.fixture(params=["postgresql", "sqlite"])
def storage(request: pytest.FixtureRequest) -> str:
    """Where order-api keeps its data: a migrated PostgreSQL database of the test's own, or the embedded
    SQLite default."""
    name: str = request.param
    return name


@pytest.fixture
def desk(order_api: OrderApiRunner, storage: str, wallet_pool: str, tmp_path: Path) -> DeskRunner:
    """``async with desk(**settings) as running:`` order-api on ``storage``, behind a trusted proxy, with a
    generous rate limit unless a test sets one."""

    @asynccontextmanager
    async def run(**overrides: Any) -> AsyncIterator[Desk]:
        values: dict[str, Any] = {
            "trusted_proxies": PROXY,
            "wallet_pool": PeerSettings(url=wallet_pool),
            "order_rate_limit": "1000/minute",
            **overrides,
        }
        async with AsyncExitStack() as stack:
            if storage == "postgresql":
                url = await stack.enter_async_context(
                    migrated_database("order-api", prefix="order_api_abuse")
                )
                values["database_url"] = url
            else:
                var_dir = tmp_path / "embedded"
                await migrate_embedded(var_dir, "order-api")
                values.update(database_url=None, var_dir=var_dir)
            api = await stack.enter_async_context(order_api(**values))
            assert service_state(api.app).runtime.database.engine.dialect.name == storage
            yield Desk(api=api)

    return run


async def test_sixty_addresses_of_one_ipv6_64_are_one_client_for_the_open_order_cap(desk: DeskRunner) -> None:
    """The finding: sixty addresses of one /64 placed sixty orders and drained sixty wallets."""
    async with desk(max_open_orders_per_ip=5) as running:
        statuses = [
            (await running.order(new_email(f"v6-{n}"), client))[0]
            for n, client in enumerate(addresses_of(ONE_64, 60))
        ]
        refused = await running.order(new_email("v6-late"), str(ONE_64[0xBEEF]))
        elsewhere = await running.order(new_email("v6-neighbour"), "2001:db8:1:3::1")
        stored = await running.stored_clients()
    assert statuses == [201] * 5 + [409] * 55
    assert refused[0] == 409
    assert (refused[1]["code"], refused[1]["limit"]) == ("open_order_limit_reached", 5)
    assert elsewhere[0] == 201  # the next /64 is another client
    assert stored == ["2001:db8:1:2::/64"] * 5 + [
        "2001:db8:1:3::/64"
    ]  # only six orders could ask for a wallet


async def test_ipv4_mapped_forms_of_an_address_are_one_client(desk: DeskRunner) -> None:
    async with desk(max_open_orders_per_ip=3) as running:
        statuses = [
            (await running.order(new_email("v4"), client))[0]
            for client in ("203.0.113.5", "::ffff:203.0.113.5", "::FFFF:CB00:7105", "203.0.113.5")
        ]
        neighbour = await running.order(new_email("v4-neighbour"), "203.0.113.6")
        stored = await running.stored_clients()
    assert statuses == [201, 201, 201, 409]
    assert neighbour[0] == 201  # IPv4 clients stay one address each
    assert stored == ["203.0.113.5"] * 3 + ["203.0.113.6"]


async def test_a_wider_ipv4_prefix_and_a_narrower_ipv6_prefix_are_settings(desk: DeskRunner) -> None:
    async with desk(max_open_orders_per_ip=1, client_ipv4_prefix=24, client_ipv6_prefix=48) as running:
        v4 = [(await running.order(new_email("v4"), c))[0] for c in ("198.51.100.1", "198.51.100.200")]
        v6 = [(await running.order(new_email("v6"), c))[0] for c in ("2001:db8:7:1::1", "2001:db8:7:2::1")]
        stored = await running.stored_clients()
    assert v4 == [201, 409]
    assert v6 == [201, 409]
    assert stored == ["198.51.100.0/24", "2001:db8:7::/48"]


async def test_orders_placed_with_a_victims_email_do_not_lock_the_victim_out(desk: DeskRunner) -> None:
    """Three orders placed with someone else's email once gave the owner of the email a 409 on their own."""
    victim = new_email("victim")
    attacker_client, victim_client = "2001:db8:bad:1::66", "203.0.113.77"
    async with desk(max_open_orders_per_ip=5) as running:
        attack = [(await running.order(victim.upper(), attacker_client))[0] for _ in range(3)]
        capped = await running.order(victim, attacker_client)
        # The owner of the email, from their own network: with just the email, and with a proven session.
        anonymous = await running.order(victim, victim_client)
        token = await running.proven_session(victim)
        proven = [(await running.order(victim, victim_client, token))[0] for _ in range(3)]
        proven_capped = await running.order(victim, "198.51.100.9", token)
        # The attacker's network still holds at most its share of the pool, whatever emails it uses.
        other_emails = [(await running.order(new_email("attacker"), attacker_client))[0] for _ in range(3)]
        stored = await running.stored_clients()
    assert attack == [201, 201, 201]
    assert capped[0] == 409
    assert (capped[1]["code"], capped[1]["limit"]) == ("open_order_limit_reached", 3)
    assert anonymous[0] == 201
    assert proven == [201, 201, 201]  # up to the customer's own cap, whatever was placed with the email
    assert proven_capped[0] == 409  # a proven customer's cap holds from any network
    assert proven_capped[1]["code"] == "open_order_limit_reached"
    assert other_emails == [201, 201, 409]  # the attacker's /64 holds 5 open orders at most
    assert stored == ["2001:db8:bad:1::/64"] * 3 + ["203.0.113.77"] * 4 + ["2001:db8:bad:1::/64"] * 2


@pytest.mark.parametrize("rate_limits", ["memory", "redis"])
async def test_order_creation_is_rate_limited_per_ipv6_64(
    desk: DeskRunner, rate_limits: str, request: pytest.FixtureRequest
) -> None:
    redis = {"redis_url": request.getfixturevalue("redis_url")} if rate_limits == "redis" else {}
    async with desk(order_rate_limit="4/minute", **redis) as running:
        statuses = [(await running.order(new_email("rl"), c))[0] for c in addresses_of(ONE_64, 10)]
        elsewhere = await running.order(new_email("rl-neighbour"), "2001:db8:1:3::1")
    assert statuses == [201] * 4 + [429] * 6
    assert elsewhere[0] == 201


async def test_the_migration_marks_orders_placed_under_a_full_session_as_proven() -> None:
    async with migrated_database("order-api", prefix="order_api_proven") as url:
        config = alembic_config(service_dir("order-api"), url=url)
        await asyncio.to_thread(command.downgrade, config, "0008_i12_audit_checkpoint")
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await connection.execute(f"SET search_path TO {SCHEMA}")
            await connection.execute(
                "INSERT INTO customer (id, email_sealed, email_index, created_at) VALUES ('c1', 's', 'i', now())"
            )
            await connection.execute(
                "INSERT INTO customer_session (id, customer_id, token_hash, kind, order_id, created_at, "
                "expires_at) VALUES ('full', 'c1', 'h1', 'full', NULL, now(), now()), "
                "('one', 'c1', 'h2', 'order', 'o-email', now(), now())"
            )
            for order_id, session_id in (("o-proven", "full"), ("o-email", "one")):
                await connection.execute(
                    'INSERT INTO "order" (id, customer_id, session_id, from_currency, from_network, '
                    "to_currency, to_network, amount, payout_address_sealed, locale, status, priority, "
                    "allocation_state, client_ip, version, created_at, updated_at) VALUES ($1, 'c1', $2, "
                    "'BTC', 'bitcoin', 'USDT', 'TRC20', 0.05, 's', 'en', 'queued', 'normal', 'pending', "
                    "'203.0.113.5', 1, now(), now())",
                    order_id,
                    session_id,
                )
            await asyncio.to_thread(command.upgrade, config, "head")
            proven = dict(await connection.fetch('SELECT id, mailbox_proven FROM "order"'))
        finally:
            await connection.close()
    assert proven == {"o-proven": True, "o-email": False}
