"""The OWASP API Security Top 10 (2023), risk by risk: each test is named after the risk it covers, makes the
refused call as an attacker would, and reads the state back afterwards to show that nothing changed.

order-api and wallet-pool run as real processes on one PostgreSQL database (as deployed: uvicorn, the real
proxy-header and body handling); the abuse tests spend the per-client limits of a desk of their own; API10's
wallet-pool is a hostile stand-in, on PostgreSQL and on the embedded SQLite default. What a process adds
nothing to (the inventory of routes and request schemas) is read from the apps in process. API8's production
start-up refusals are ``test_production_guards.py``; this module checks what a started production service
shows.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from coin_addresses import demo_address
from desk_testing.production import SERVICES as PRODUCTION_SERVICES
from desk_testing.production import production_env
from desk_testing.stack import Stack, customer_email, import_btc_wallets
from order_api.testing import completion_body, order_body
from servicekit.apikeys import mint_key
from servicekit.openapi import INTERNAL_OPENAPI_URL, documents_of
from servicekit.testing import (
    ServiceProcess,
    eventually,
    free_port,
    migrate_embedded,
    migrated_database,
    running_app,
    serve_stand_in,
)

PACKAGES = ("order_api", "wallet_pool", "notifier", "telegram_gateway")
ADMIN_TELEGRAM_ID = 770_001


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Desk:
    """order-api and wallet-pool as processes on one PostgreSQL database, with the cast of every test:
    Alice's and Bob's orders, an order operator Xenia holds, operators Xenia and Yuri, support Sam and an
    admin the Telegram gateway knows by their Telegram id."""

    stack: Stack
    database_url: str
    order_api: httpx.AsyncClient
    wallet_pool: httpx.AsyncClient
    alice: dict[str, Any]
    bob: dict[str, Any]
    held: dict[str, Any]
    xenia: dict[str, Any]
    yuri: dict[str, Any]
    sam: dict[str, Any]
    admin_operator: dict[str, Any]

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.stack.keys.admin)

    async def create_operator(self, name: str, role: str = "operator", **fields: Any) -> dict[str, Any]:
        created = await self.order_api.post(
            "/v1/admin/operators", json={"name": name, "role": role, **fields}, headers=self.admin
        )
        assert created.status_code == 201, created.text
        operator: dict[str, Any] = created.json()
        return operator

    async def place_order(self, email: str, **fields: Any) -> dict[str, Any]:
        created = await self.order_api.post(
            "/v1/orders", json={**order_body(customer_email(0)), "email": email, **fields}
        )
        assert created.status_code == 201, created.text
        order: dict[str, Any] = created.json()
        return order

    async def order_as_staff(self, order_id: str) -> dict[str, Any]:
        """The order as the admin reads it back: its status, holder and version."""
        response = await self.order_api.get(f"/v1/operator/orders/{order_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()
        return order

    async def operators(self) -> list[dict[str, Any]]:
        response = await self.order_api.get("/v1/admin/operators", headers=self.admin)
        assert response.status_code == 200, response.text
        operators: list[dict[str, Any]] = response.json()["items"]
        return operators

    async def wallets(self) -> list[dict[str, Any]]:
        response = await self.wallet_pool.get(
            "/v1/wallets", params={"limit": 100}, headers=bearer(self.stack.keys.wallet_pool_admin)
        )
        assert response.status_code == 200, response.text
        wallets: list[dict[str, Any]] = response.json()["items"]
        return wallets

    async def fetchval(self, query: str, *args: Any) -> Any:
        connection = await asyncpg.connect(
            self.database_url.replace("postgresql+asyncpg://", "postgresql://")
        )
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    async def count_orders(self) -> int:
        count: int = await self.fetchval('SELECT count(*) FROM order_api."order"')
        return count


@asynccontextmanager
async def running_stack(logs: Path, wallets: int, **order_api_env: str) -> AsyncIterator[Stack]:
    """order-api and wallet-pool as processes on a fresh PostgreSQL database, ``wallets`` BTC addresses in
    the pool."""
    async with migrated_database("order-api", "wallet-pool") as url:
        stack = Stack(database_url=url, logs=logs)
        wallet_pool, order_api = stack.wallet_pool(), stack.order_api(**order_api_env)
        try:
            await wallet_pool.start()
            await order_api.start()
            await import_btc_wallets(wallet_pool, stack, wallets)
            yield stack
        finally:
            await order_api.stop()
            await wallet_pool.stop()


@pytest.fixture(scope="module")
async def desk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Desk]:
    async with (
        running_stack(tmp_path_factory.mktemp("owasp"), 4) as stack,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.order_api_port}") as order_client,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.wallet_pool_port}") as pool_client,
    ):
        assert stack.database_url is not None
        desk = Desk(
            stack=stack,
            database_url=stack.database_url,
            order_api=order_client,
            wallet_pool=pool_client,
            alice={},
            bob={},
            held={},
            xenia={},
            yuri={},
            sam={},
            admin_operator={},
        )
        desk.alice = await desk.place_order("alice@example.com")
        desk.bob = await desk.place_order("bob@example.com")
        desk.held = await desk.place_order("carol@example.com")
        desk.xenia = await desk.create_operator("Xenia")
        desk.yuri = await desk.create_operator("Yuri")
        desk.sam = await desk.create_operator("Sam", "support")
        desk.admin_operator = await desk.create_operator("Ada", "admin", telegram_user_id=ADMIN_TELEGRAM_ID)
        taken = await order_client.post(
            f"/v1/operator/orders/{desk.held['id']}/take", headers=bearer(desk.xenia["token"])
        )
        assert taken.status_code == 200, taken.text
        yield desk


def problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the problem+json refusal ``status`` (with ``code``); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    if code is not None:
        assert body["code"] == code, body
    return body


def without_clock(order: dict[str, Any]) -> dict[str, Any]:
    """An order minus what moves by itself (the queue's estimate)."""
    return {k: v for k, v in order.items() if k not in ("estimated_wait_seconds", "queue_position")}


# --- API1:2023 Broken Object Level Authorization -------------------------------------------------------------


async def test_api1_broken_object_level_authorization_another_customers_order(desk: Desk) -> None:
    alice, bob = desk.alice, desk.bob
    before = await desk.order_as_staff(bob["id"])
    as_alice = bearer(alice["session_token"])

    problem(await desk.order_api.get(f"/v1/orders/{bob['id']}", headers=as_alice), 404, "order_not_found")
    problem(
        await desk.order_api.post(f"/v1/orders/{bob['id']}/cancel", headers=as_alice), 404, "order_not_found"
    )
    # an order's session reaches that order only: listing "my orders" needs a session proven by email
    problem(await desk.order_api.get("/v1/orders", headers=as_alice), 403, "full_session_required")

    after = await desk.order_as_staff(bob["id"])
    assert without_clock(after) == without_clock(before)
    assert after["status"] == "awaiting_deposit"


async def test_api1_broken_object_level_authorization_another_operators_order(desk: Desk) -> None:
    held = desk.held
    before = await desk.order_as_staff(held["id"])
    assert before["operator_id"] == desk.xenia["id"]
    as_yuri = bearer(desk.yuri["token"])

    for attempt in (
        desk.order_api.post(
            f"/v1/operator/orders/{held['id']}/status", json={"status": "cancelled"}, headers=as_yuri
        ),
        desk.order_api.post(
            f"/v1/operator/orders/{held['id']}/status",
            json=completion_body(before),
            headers={**as_yuri, "If-Match": str(before["version"])},
        ),
        desk.order_api.post(f"/v1/operator/orders/{held['id']}/release", headers=as_yuri),
        desk.order_api.post(f"/v1/operator/orders/{held['id']}/take", headers=as_yuri),
    ):
        refused = await attempt
        assert refused.status_code == 409, refused.text
        assert refused.json()["held_by"]["operator_id"] == desk.xenia["id"]

    assert await desk.order_as_staff(held["id"]) == before


# --- API2:2023 Broken Authentication -------------------------------------------------------------------------


async def test_api2_broken_authentication_customer_sessions(desk: Desk) -> None:
    """Unknown, expired and revoked (logged out) session tokens, and no token at all, are 401: they neither
    read nor cancel the order."""
    expiring = await desk.place_order("erin@example.com")
    leaving = await desk.place_order("frank@example.com")
    await desk.fetchval(
        "UPDATE order_api.customer_session SET expires_at = now() - interval '1 minute' WHERE order_id = $1",
        expiring["id"],
    )
    logout = await desk.order_api.post("/v1/auth/logout", headers=bearer(leaving["session_token"]))
    assert logout.status_code == 204, logout.text
    before = {o["id"]: await desk.order_as_staff(o["id"]) for o in (expiring, leaving)}

    for order, token in (
        (expiring, expiring["session_token"]),
        (leaving, leaving["session_token"]),
        (expiring, "cs_" + uuid.uuid4().hex),
        (leaving, "not-a-token"),
    ):
        problem(await desk.order_api.get(f"/v1/orders/{order['id']}", headers=bearer(token)), 401)
        problem(await desk.order_api.post(f"/v1/orders/{order['id']}/cancel", headers=bearer(token)), 401)
    problem(await desk.order_api.get(f"/v1/orders/{leaving['id']}"), 401, "session_missing")
    problem(await desk.order_api.post(f"/v1/orders/{leaving['id']}/cancel"), 401, "session_missing")

    for order_id, order in before.items():
        assert without_clock(await desk.order_as_staff(order_id)) == without_clock(order)


async def test_api2_broken_authentication_operator_tokens(desk: Desk) -> None:
    """An expired, a revoked and an unknown operator token, and none, are 401: none takes an order."""
    expired = await desk.create_operator("Eve")
    revoked = await desk.create_operator("Rob")
    await desk.fetchval(
        "UPDATE order_api.operator SET token_expires_at = now() - interval '1 minute' WHERE id = $1",
        expired["id"],
    )
    revoke = await desk.order_api.post(
        f"/v1/admin/operators/{revoked['id']}/revoke-token", headers=desk.admin
    )
    assert revoke.status_code in (200, 204), revoke.text
    order = desk.alice
    before = await desk.order_as_staff(order["id"])

    for token in (expired["token"], revoked["token"], "op_" + uuid.uuid4().hex):
        problem(await desk.order_api.get("/v1/operator/orders", headers=bearer(token)), 401)
        problem(
            await desk.order_api.post(f"/v1/operator/orders/{order['id']}/take", headers=bearer(token)), 401
        )
    problem(
        await desk.order_api.post(f"/v1/operator/orders/{order['id']}/take"), 401, "operator_token_missing"
    )

    assert await desk.order_as_staff(order["id"]) == before


async def test_api2_broken_authentication_another_services_keys(desk: Desk) -> None:
    """A key one service accepts is worth nothing at another: the notifier's keys and wallet-pool's admin key
    are unknown to order-api (401); wallet-pool's own key to order-api publishes events and nothing else
    (403); order-api's key to wallet-pool is unknown to order-api, and order-api's key to the notifier is
    unknown to wallet-pool."""
    keys = desk.stack.keys
    operators = await desk.operators()
    wallets = await desk.wallets()
    create = {"name": "Mallory", "role": "admin"}

    for key in (
        keys.notifier_to_telegram_gateway,
        keys.order_api_to_notifier,
        keys.notifier_admin,
        keys.wallet_pool_admin,
        keys.order_api_to_wallet_pool,
    ):
        problem(await desk.order_api.post("/v1/admin/operators", json=create, headers=bearer(key)), 401)
    problem(
        await desk.order_api.post(
            "/v1/admin/operators", json=create, headers=bearer(keys.wallet_pool_to_order_api)
        ),
        403,
        "operator_forbidden",
    )
    problem(await desk.order_api.post("/v1/admin/operators", json=create), 401, "operator_token_missing")

    disable = f"/v1/wallets/{wallets[-1]['id']}/disable"
    for key in (keys.admin, keys.order_api_to_notifier, keys.wallet_pool_to_order_api, mint_key("adm")):
        problem(await desk.wallet_pool.post(disable, headers=bearer(key)), 401, "api_key_invalid")
    problem(await desk.wallet_pool.post(disable), 401, "api_key_missing")

    assert await desk.operators() == operators
    assert await desk.wallets() == wallets


# --- API3:2023 Broken Object Property Level Authorization ----------------------------------------------------


MASS_ASSIGNED = {
    "status": "completed",
    "operator_id": "op-1",
    "deposit_address": "bc1qattacker0000000000000000000000000000000",
    "version": 99,
    "customer_id": "c-1",
    "id": "00000000-0000-0000-0000-000000000000",
    "priority": "vip",
    "session_token": "cs_mine",
}


async def test_api3_broken_object_property_level_authorization(desk: Desk) -> None:
    """A property the caller may not set is refused by name (422), never mass-assigned."""
    count = await desk.count_orders()
    for field, value in MASS_ASSIGNED.items():
        refused = await desk.order_api.post(
            "/v1/orders", json={**order_body(customer_email(7)), field: value}
        )
        body = problem(refused, 422, "validation_failed")
        assert field in body["detail"], body
    assert await desk.count_orders() == count

    held = desk.held
    before = await desk.order_as_staff(held["id"])
    as_xenia = bearer(desk.xenia["token"])
    for path, payload, field in (
        ("status", {"status": "awaiting_deposit", "operator_id": desk.yuri["id"]}, "operator_id"),
        ("status", {"status": "awaiting_deposit", "version": 1}, "version"),
        ("release", {"operator_id": desk.yuri["id"]}, "operator_id"),
        ("escalate", {"comment": "look", "status": "cancelled"}, "status"),
    ):
        refused = await desk.order_api.post(
            f"/v1/operator/orders/{held['id']}/{path}", json=payload, headers=as_xenia
        )
        assert field in problem(refused, 422, "validation_failed")["detail"]
    assert await desk.order_as_staff(held["id"]) == before

    operators = await desk.operators()
    for payload in ({"token": "op_chosen"}, {"id": "x"}, {"token_active": True}):
        refused = await desk.order_api.patch(
            f"/v1/admin/operators/{desk.xenia['id']}", json=payload, headers=desk.admin
        )
        assert next(iter(payload)) in problem(refused, 422, "validation_failed")["detail"]
    assert await desk.operators() == operators

    wallets = await desk.wallets()
    refused = await desk.wallet_pool.post(
        "/v1/wallets",
        json={"currency": "BTC", "addresses": [], "status": "reserved", "order_id": desk.alice["id"]},
        headers=bearer(desk.stack.keys.wallet_pool_admin),
    )
    problem(refused, 422)
    assert await desk.wallets() == wallets


EVENT_BODIES = frozenset({"EventEnvelope", "EventBatch"})
"""Reviewed: events between services carry a payload each receiver validates against its contract model
(``desk_contracts.events``); the envelope is built by servicekit and only read field by field, so an unknown
envelope key is never stored."""


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, FastAPI]]:
    """Every service's app, built as it is served (not started: the inventory is in its routes)."""
    var_dir = tmp_path_factory.mktemp("owasp-apps")
    built = []
    for package in PACKAGES:
        main = importlib.import_module(f"{package}.main")
        settings = importlib.import_module(f"{package}.settings")
        built.append((package, main.create_app(settings.Settings(var_dir=var_dir / package))))
    return built


def api_routes(app: FastAPI) -> Iterator[APIRoute]:
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context.original_route


def body_models(route: APIRoute) -> list[type[BaseModel]]:
    if route.body_field is None:
        return []
    annotation = route.body_field.field_info.annotation
    candidates = getattr(annotation, "__args__", (annotation,))
    return [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def test_api3_every_request_body_of_every_service_forbids_unknown_properties(
    apps: list[tuple[str, FastAPI]],
) -> None:
    lenient = []
    for package, app in apps:
        for route in api_routes(app):
            for model in body_models(route):
                nested = [model] + [
                    f.annotation
                    for f in model.model_fields.values()
                    if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
                ]
                for each in nested:
                    if each.__name__ not in EVENT_BODIES and each.model_config.get("extra") != "forbid":
                        lenient.append(
                            f"{package} {sorted(route.methods or ())} {route.path}: {each.__name__}"
                        )
    assert lenient == []


# --- API4:2023 Unrestricted Resource Consumption -------------------------------------------------------------


async def test_api4_unrestricted_resource_consumption_bodies_and_pages(desk: Desk) -> None:
    count = await desk.count_orders()
    oversized = await desk.order_api.post(
        "/v1/orders", json={**order_body(customer_email(8)), "payout_address": "T" * 40_000}
    )
    problem(oversized, 422, "body_too_large")  # the house answer for a body over the limit, read or not
    assert await desk.count_orders() == count

    staff = desk.admin
    for client, path, headers in (
        (desk.order_api, "/v1/orders", bearer(desk.alice["session_token"])),
        (desk.order_api, "/v1/operator/orders", staff),
        (desk.order_api, "/v1/operator/orders/mine", bearer(desk.xenia["token"])),
        (desk.order_api, "/v1/audit", staff),
        (desk.wallet_pool, "/v1/wallets", bearer(desk.stack.keys.wallet_pool_admin)),
    ):
        for limit in ("100000", "0", "-1", "9" * 40):
            problem(await client.get(path, params={"limit": limit}, headers=headers), 422)


async def test_api4_unrestricted_resource_consumption_open_orders_per_customer(desk: Desk) -> None:
    email = "greedy@example.com"
    placed = [await desk.place_order(email) for _ in range(3)]
    count = await desk.count_orders()
    problem(
        await desk.order_api.post("/v1/orders", json={**order_body(customer_email(0)), "email": email}),
        409,
        "open_order_limit_reached",
    )
    assert await desk.count_orders() == count
    for order in placed:
        assert (await desk.order_as_staff(order["id"]))["status"] in (
            "awaiting_address",
            "awaiting_deposit",
            "queued",
        )


@dataclass
class Abuse:
    """A desk of its own with tight per-client limits, for the tests that spend them."""

    stack: Stack
    order_api: httpx.AsyncClient
    wallet_pool: httpx.AsyncClient
    wallets: int


@pytest.fixture(scope="module")
async def abuse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Abuse]:
    """Three open orders and five orders a minute per client, three email codes a minute; no proxy trusted."""
    async with (
        running_stack(
            tmp_path_factory.mktemp("owasp-abuse"),
            8,
            ORDER_API_MAX_OPEN_ORDERS_PER_IP="3",
            ORDER_API_ORDER_RATE_LIMIT="5/minute",
            ORDER_API_AUTH_RATE_LIMIT="3/minute",
            ORDER_API_TRUSTED_PROXIES="[]",
        ) as stack,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.order_api_port}") as order_client,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack.wallet_pool_port}") as pool_client,
    ):
        yield Abuse(stack=stack, order_api=order_client, wallet_pool=pool_client, wallets=8)


def spoofed(n: int) -> dict[str, str]:
    """Headers a client sends to pass for someone else: a new forwarded address per request."""
    address = str(ipaddress.ip_address("203.0.113.1") + n)
    return {"X-Forwarded-For": address, "X-Real-IP": address, "Forwarded": f"for={address}"}


async def free_btc(abuse: Abuse) -> int:
    response = await abuse.wallet_pool.get("/v1/stats", headers=bearer(abuse.stack.keys.wallet_pool_admin))
    assert response.status_code == 200, response.text
    (btc,) = [c for c in response.json()["currencies"] if c["currency"] == "BTC"]
    free: int = btc["free"]
    return free


async def test_api4_unrestricted_resource_consumption_rate_limits_ignore_spoofed_forwarded_for(
    abuse: Abuse,
) -> None:
    """With no trusted proxy, X-Forwarded-For from the client is not believed: the per-client limit on email
    codes (3 a minute) counts the real peer, whatever address each request claims. (The order limits, in the
    API6 test.)"""
    for n in range(3):
        sent = await abuse.order_api.post(
            "/v1/auth/email-code", json={"email": f"visitor{n}@example.com"}, headers=spoofed(n)
        )
        assert sent.status_code == 202, sent.text
    limited = await abuse.order_api.post(
        "/v1/auth/email-code", json={"email": "visitor9@example.com"}, headers=spoofed(9)
    )
    problem(limited, 429, "rate_limited")
    assert "retry-after" in limited.headers


@pytest.fixture(scope="module")
async def proxied(abuse: Abuse) -> AsyncIterator[httpx.AsyncClient]:
    """A second order-api of the abuse desk, behind a trusted proxy on loopback: the client is whom
    ``X-Forwarded-For`` names."""
    behind_proxy = abuse.stack.order_api(
        ORDER_API_MAX_OPEN_ORDERS_PER_IP="3",
        ORDER_API_ORDER_RATE_LIMIT="5/minute",
        ORDER_API_TRUSTED_PROXIES='["127.0.0.1/32"]',
    )
    behind_proxy.port = free_port()
    try:
        await behind_proxy.start(ready_within=60)
        async with httpx.AsyncClient(base_url=behind_proxy.url) as client:
            yield client
    finally:
        await behind_proxy.stop()


async def test_api4_unrestricted_resource_consumption_one_ipv6_64_is_one_client(
    abuse: Abuse, proxied: httpx.AsyncClient
) -> None:
    """Behind a trusted proxy, IPv6 clients are keyed on their /64: one network hopping between its 2^64
    addresses holds no more open orders than one address may."""
    free = await free_btc(abuse)
    statuses = []
    for n in range(5):
        address = f"2001:db8:6464:6464:{n:x}:{n:x}:{n:x}:{n + 1:x}"
        response = await proxied.post(
            "/v1/orders", json=order_body(customer_email(500 + n)), headers={"X-Forwarded-For": address}
        )
        statuses.append(response.status_code)
        if response.status_code != 201:
            problem(response, 409, "open_order_limit_reached")
    assert statuses == [201, 201, 201, 409, 409], statuses
    assert await free_btc(abuse) == free - 3


# --- API5:2023 Broken Function Level Authorization -----------------------------------------------------------


async def test_api5_broken_function_level_authorization(desk: Desk) -> None:
    keys = desk.stack.keys
    operators = await desk.operators()
    wallets = await desk.wallets()
    create = {"name": "Mallory", "role": "admin"}
    target = f"/v1/admin/operators/{desk.yuri['id']}"

    for staff in (desk.xenia, desk.sam):
        as_staff = bearer(staff["token"])
        problem(await desk.order_api.get("/v1/admin/operators", headers=as_staff), 403, "operator_forbidden")
        problem(
            await desk.order_api.post("/v1/admin/operators", json=create, headers=as_staff),
            403,
            "operator_forbidden",
        )
        problem(
            await desk.order_api.patch(target, json={"role": "admin"}, headers=as_staff),
            403,
            "operator_forbidden",
        )
        problem(
            await desk.order_api.post(f"{target}/revoke-token", headers=as_staff), 403, "operator_forbidden"
        )
        problem(await desk.order_api.get("/v1/audit", headers=as_staff), 403, "operator_forbidden")
    problem(
        await desk.order_api.get("/v1/operator/escalations", headers=bearer(desk.xenia["token"])),
        403,
        "operator_forbidden",
    )

    # an admin acted for by the Telegram gateway is an operator at work, not an admin
    acted_for = {
        **bearer(keys.telegram_gateway_to_order_api),
        "X-Operator-Telegram-Id": str(ADMIN_TELEGRAM_ID),
    }
    acted = await desk.order_api.get("/v1/operator/orders", headers=acted_for)
    assert acted.status_code == 200, acted.text
    for refused in (
        await desk.order_api.post("/v1/admin/operators", json=create, headers=acted_for),
        await desk.order_api.patch(target, json={"active": False}, headers=acted_for),
        await desk.order_api.get("/v1/audit", headers=acted_for),
    ):
        problem(refused, 403, "acted_for_identity_forbidden")

    # a service's key reaches its own work only, at another service too
    for key in (keys.order_api_to_wallet_pool, keys.telegram_gateway_to_wallet_pool):
        problem(
            await desk.wallet_pool.post(f"/v1/wallets/{wallets[-1]['id']}/disable", headers=bearer(key)),
            403,
            "scope_missing",
        )
        problem(
            await desk.wallet_pool.post(
                "/v1/wallets", json={"currency": "BTC", "addresses": []}, headers=bearer(key)
            ),
            403,
            "scope_missing",
        )
    problem(
        await desk.order_api.post("/v1/events", json={}, headers=bearer(keys.telegram_gateway_to_order_api)),
        403,
        "scope_missing",
    )

    assert await desk.operators() == operators
    assert await desk.wallets() == wallets


LISTS = ("/v1/notifications", "/v1/alerts")


async def test_api5_broken_function_level_authorization_at_the_notifier_and_the_gateway(
    tmp_path: Path,
) -> None:
    """The keys of order-api and wallet-pool publish events to the notifier and nothing else there; the
    notifier's own admin routes and the gateway's message route refuse them (403 without the scope, 401 where
    the key is unknown), and no notification or alert changes."""
    stack = Stack(database_url=None, logs=tmp_path, var_dir=tmp_path / "var")
    keys = stack.keys
    await migrate_embedded(tmp_path / "var", "notifier", "telegram-gateway")
    # the keys each accepts, exactly as the desk's processes are given them
    notifier_keys = json.loads(stack.notifier(smtp_port=free_port()).env["NOTIFIER_API_KEYS"])
    gateway_keys = json.loads(stack.telegram_gateway().env["TELEGRAM_GATEWAY_API_KEYS"])
    notifier_settings = importlib.import_module("notifier.settings").Settings(
        var_dir=tmp_path / "var", environment="test", api_keys=notifier_keys
    )
    gateway_settings = importlib.import_module("telegram_gateway.settings").Settings(
        var_dir=tmp_path / "var", environment="test", api_keys=gateway_keys
    )
    notifier_app = importlib.import_module("notifier.main").create_app(notifier_settings)
    gateway_app = importlib.import_module("telegram_gateway.main").create_app(gateway_settings)
    async with running_app(notifier_app) as notifier, running_app(gateway_app) as gateway:

        async def notifications_and_alerts() -> list[Any]:
            answers = [await notifier.get(path, headers=bearer(keys.notifier_admin)) for path in LISTS]
            assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
            return [a.json() for a in answers]

        before = await notifications_and_alerts()
        for key in (keys.order_api_to_notifier, keys.wallet_pool_to_notifier):
            for response in (
                await notifier.get("/v1/notifications", headers=bearer(key)),
                await notifier.post(f"/v1/notifications/{uuid.uuid4()}/redeliver", headers=bearer(key)),
                await notifier.get("/v1/alerts", headers=bearer(key)),
                await notifier.post(f"/v1/alerts/{uuid.uuid4()}/acknowledge", headers=bearer(key)),
            ):
                problem(response, 403, "scope_missing")
        for key in (keys.admin, keys.wallet_pool_admin, keys.notifier_to_telegram_gateway):
            problem(await notifier.get("/v1/notifications", headers=bearer(key)), 401, "api_key_invalid")
        message = {"kind": "operators", "text": "hello"}
        for key in (
            keys.notifier_admin,
            keys.order_api_to_notifier,
            keys.wallet_pool_to_notifier,
            keys.admin,
        ):
            problem(
                await gateway.post("/v1/messages", json=message, headers=bearer(key)), 401, "api_key_invalid"
            )
        assert await notifications_and_alerts() == before


# --- API6:2023 Unrestricted Access to Sensitive Business Flows -----------------------------------------------


async def test_api6_unrestricted_access_to_sensitive_business_flows_pool_draining(abuse: Abuse) -> None:
    """One client placing orders under ever new emails and forwarded addresses holds at most the per-client
    cap of deposit addresses (3), then is rate limited (5 orders a minute); the rest of the pool stays free."""
    free = await free_btc(abuse)
    statuses = []
    for n in range(5):
        response = await abuse.order_api.post(
            "/v1/orders", json=order_body(customer_email(200 + n)), headers=spoofed(100 + n)
        )
        statuses.append(response.status_code)
        if response.status_code != 201:
            problem(response, 409, "open_order_limit_reached")
    assert statuses == [201, 201, 201, 409, 409], statuses
    problem(
        await abuse.order_api.post("/v1/orders", json=order_body(customer_email(299)), headers=spoofed(199)),
        429,
        "rate_limited",
    )
    assert await free_btc(abuse) == free - 3


async def test_api6_unrestricted_access_to_sensitive_business_flows_no_lockout_by_email(
    proxied: httpx.AsyncClient,
) -> None:
    """Orders placed with someone else's email (no proven session) count against the client that placed them:
    they fill the attacker's own cap, and the owner of the email, from their own network, still orders."""
    victim = "victim@example.com"
    attacker = {"X-Forwarded-For": "192.0.2.10"}
    for _ in range(3):
        placed = await proxied.post("/v1/orders", json=order_body(victim), headers=attacker)
        assert placed.status_code == 201, placed.text
    problem(
        await proxied.post("/v1/orders", json=order_body(victim), headers=attacker),
        409,
        "open_order_limit_reached",
    )
    own = await proxied.post(
        "/v1/orders", json=order_body(victim), headers={"X-Forwarded-For": "198.51.100.7"}
    )
    assert own.status_code == 201, own.text


# --- API7:2023 Server Side Request Forgery -------------------------------------------------------------------


URL_WORDS = ("url", "uri", "href", "link", "webhook", "callback", "endpoint", "host", "redirect")


def schema_properties(schema: Any, components: dict[str, Any], seen: set[str]) -> Iterator[tuple[str, Any]]:
    """Every (name, schema) of the properties reachable from ``schema`` in an OpenAPI document."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                yield from schema_properties(components[name], components, seen)
            return
        for name, sub in schema.get("properties", {}).items():
            yield name, sub
            yield from schema_properties(sub, components, seen)
        for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
            value = schema.get(key)
            for sub in value if isinstance(value, list) else [value]:
                yield from schema_properties(sub, components, seen)


def test_api7_server_side_request_forgery_no_route_takes_a_url(apps: list[tuple[str, FastAPI]]) -> None:
    """No route of any service accepts a URL (or host) the desk would then fetch: peer URLs, the notifier's
    webhook and the Bot API URL are settings, never input. The check reads every request body, path, query
    and header parameter of every OpenAPI document for URL-typed or URL-named inputs."""
    found = []
    for package, app in apps:
        document = documents_of(app).complete()
        components = document.get("components", {}).get("schemas", {})
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                inputs: list[tuple[str, Any]] = [
                    (p["name"], p.get("schema", {})) for p in operation.get("parameters", [])
                ]
                for media in operation.get("requestBody", {}).get("content", {}).values():
                    inputs.extend(schema_properties(media.get("schema", {}), components, set()))
                for name, schema in inputs:
                    typed = isinstance(schema, dict) and schema.get("format") in ("uri", "url", "hostname")
                    named = any(word in name.lower() for word in URL_WORDS)
                    if typed or named:
                        found.append(f"{package} {method.upper()} {path}: {name}")
    # The reviewed exceptions:
    # - the Telegram webhook's body is Telegram's update, read by aiogram, whose URL-looking fields (entities'
    #   "url", a photo's file link) are never fetched by the desk;
    # - the website's webhook endpoints (notifier, scope ``webhooks:admin``): their URL is fetched, so it is
    #   refused when it resolves to loopback, private, link-local or metadata addresses, at registration and
    #   again at delivery, which connects to the address it checked (``notifier.webhooks.targets``, tested in
    #   services/notifier/tests/test_webhooks.py); ``endpoint_id`` is the word "endpoint", not a URL.
    reviewed = ("telegram_gateway POST /telegram/webhook", "notifier ")
    assert [f for f in found if not f.startswith(reviewed)] == []
    notifier_routes = {f.split(" ")[2].removesuffix(":") for f in found if f.startswith("notifier ")}
    assert all(path.startswith("/v1/admin/webhook-endpoints") for path in notifier_routes), notifier_routes


# --- API8:2023 Security Misconfiguration ---------------------------------------------------------------------


async def test_api8_security_misconfiguration_production_shows_only_what_it_must(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    """In production order-api serves no docs or OpenAPI document, no metrics and no readiness details to an
    anonymous caller, sends the usual security headers and no server banner, never lets a response carrying a
    session token be cached, and answers CORS preflights for its own methods (PATCH too) from its origins only. (That production refuses to
    start on guessed settings is ``test_production_guards.py``.)"""
    service = PRODUCTION_SERVICES["order-api"]
    async with migrated_database("order-api") as url:
        env = production_env(service, database_url=url) | {
            "ORDER_API_VAR_DIR": str(tmp_path / "var"),
            "ORDER_API_WALLET_POOL__URL": "http://127.0.0.1:9",
            "ORDER_API_NOTIFIER__URL": "http://127.0.0.1:9",
            "ORDER_API_CORS_ORIGINS": '["https://desk.example"]',
        }
        process = ServiceProcess(
            app="order_api.main:create_app", env=env, log_path=tmp_path / "order-api.log"
        )
        services.append(await process.start())
        async with httpx.AsyncClient(base_url=process.url) as client:
            for path in (
                "/docs",
                "/redoc",
                "/openapi.json",
                INTERNAL_OPENAPI_URL,
                "/docs/oauth2-redirect",
                "/docs-assets/swagger-ui-bundle.js",
                "/metrics",
            ):
                response = await client.get(path)
                assert response.status_code in (401, 403, 404), f"{path}: {response.status_code}"
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()) == {"status"}, "readiness details (checks, schema) are for a metrics key"
            created = await client.post("/v1/orders", json=order_body(customer_email(300)))
            assert created.status_code == 201, created.text
            assert "session_token" in created.json()
            assert "no-store" in created.headers.get("cache-control", "")
            for response in (created, await client.get("/v1/stats/pool"), await client.get("/nowhere")):
                assert response.headers.get("x-content-type-options") == "nosniff", response.headers
                assert "server" not in response.headers, response.headers

            preflight = await client.options(
                "/v1/admin/operators/some-operator",
                headers={"Origin": "https://desk.example", "Access-Control-Request-Method": "PATCH"},
            )
            assert preflight.status_code == 200, preflight.text
            evil = await client.options(
                "/v1/orders",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )
            assert "access-control-allow-origin" not in evil.headers
        await process.stop()


# --- API9:2023 Improper Inventory Management -----------------------------------------------------------------


HIDDEN_ROUTES = {
    "/openapi.json",
    INTERNAL_OPENAPI_URL,
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/docs-assets",
}
"""Reviewed: the documentation routes themselves (and their static assets) are the only routes in neither
OpenAPI document (public or internal)."""


def test_api9_improper_inventory_management_every_route_is_documented(
    apps: list[tuple[str, FastAPI]],
) -> None:
    undocumented = []
    for package, app in apps:
        documented = {
            (path, method.upper())
            for path, operations in documents_of(app).complete()["paths"].items()
            for method in operations
        }
        for context in iter_route_contexts(app.routes):
            path = context.path
            if path in HIDDEN_ROUTES:
                continue
            methods = context.methods or {"*"}
            if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
                undocumented.append(f"{package} {path}")
                continue
            undocumented += [
                f"{package} {m} {path}" for m in methods - {"HEAD"} if (path, m) not in documented
            ]
    assert undocumented == []


# --- API10:2023 Unsafe Consumption of APIs -------------------------------------------------------------------


HOSTILE_ANSWERS = ("script", "wrong_currency", "other_order", "same_address", "huge", "forged_problem")
"""In the order the orders are placed: the reconciler takes them oldest first and ends its pass at a peer's
problem (wallet-pool is taken to be away), so the forged problem comes last."""
HONEST_ADDRESS = demo_address(currency="BTC", network="bitcoin", seed=4242)


def hostile_wallet_pool(asked: list[str]) -> web.Application:
    """A stand-in for wallet-pool that answers every order with something a peer must not be believed for;
    the answer depends on the order's place in ``asked`` (the order ids, one per call). The first order is
    answered honestly (``HONEST_ADDRESS``), so that "the same address for everyone" has a rightful holder."""
    eth = demo_address(currency="ETH", network="ethereum", seed=4242)

    def answer(order_id: str) -> web.Response:
        place = list(dict.fromkeys(asked)).index(order_id)
        allocated = {"order_id": order_id, "status": "allocated", "currency": "BTC", "network": "bitcoin"}
        if place == 0:
            return web.json_response({**allocated, "address": HONEST_ADDRESS}, status=201)
        kind = HOSTILE_ANSWERS[(place - 1) % len(HOSTILE_ANSWERS)]
        valid_elsewhere = demo_address(currency="BTC", network="bitcoin", seed=5000 + place)
        if kind == "script":
            return web.json_response({**allocated, "address": "<script>alert(1)</script>"})
        if kind == "wrong_currency":
            return web.json_response({**allocated, "address": eth})
        if kind == "other_order":
            return web.json_response({**allocated, "order_id": str(uuid.uuid4()), "address": valid_elsewhere})
        if kind == "same_address":
            return web.json_response({**allocated, "address": HONEST_ADDRESS})
        if kind == "forged_problem":
            return web.json_response(
                {"type": "about:blank", "title": "Slow down", "status": 429, "code": "rate_limited"},
                status=429,
                headers={"Retry-After": "99999"},
                content_type="application/problem+json",
            )
        return web.json_response({**allocated, "address": valid_elsewhere, "padding": "x" * 30_000_000})

    async def allocate(request: web.Request) -> web.Response:
        order_id = str((await request.json())["order_id"])
        asked.append(order_id)
        return answer(order_id)

    async def allocation(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        asked.append(order_id)
        return answer(order_id)

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    app.router.add_get("/v1/allocations/{order_id}", allocation)
    return app


@asynccontextmanager
async def storage(kind: str, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack on a fresh PostgreSQL database with order-api's schema, or on the embedded default."""
    if kind == "sqlite":
        await migrate_embedded(tmp_path / "var", "order-api")
        yield Stack(database_url=None, logs=tmp_path, var_dir=tmp_path / "var")
        return
    async with migrated_database("order-api") as url:
        yield Stack(database_url=url, logs=tmp_path)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
async def test_api10_unsafe_consumption_of_apis_a_hostile_wallet_pool_answer_is_not_stored(
    kind: str, tmp_path: Path
) -> None:
    """order-api validates what wallet-pool answers: a markup address, another currency's address, another
    order's allocation, an address already given to another order, a forged problem and 30 MB of JSON are
    each "no address yet" (the order is accepted, awaiting its address, the reconciler asks again), never stored,
    never a 5xx, never a peer's Retry-After passed on to the customer."""
    asked: list[str] = []
    async with (
        serve_stand_in(hostile_wallet_pool(asked)) as wallet_pool_url,
        storage(kind, tmp_path) as stack,
    ):
        order_api = stack.order_api(ORDER_API_WALLET_POOL__URL=wallet_pool_url)
        try:
            await order_api.start()
            async with httpx.AsyncClient(base_url=order_api.url, timeout=30) as client:
                honest = await client.post("/v1/orders", json=order_body(customer_email(399)))
                assert honest.status_code == 201, honest.text
                assert honest.json()["deposit_address"] == HONEST_ADDRESS
                orders = []
                for n in range(len(HOSTILE_ANSWERS)):
                    created = await client.post("/v1/orders", json=order_body(customer_email(400 + n)))
                    assert created.status_code == 201, created.text
                    assert "retry-after" not in created.headers
                    assert created.json()["deposit_address"] is None
                    orders.append(created.json())
                await eventually(
                    lambda: _asked_twice(asked, orders),
                    within=20.0,
                    message="the reconciler asks wallet-pool again about every order",
                )
                for order in orders:
                    read = await client.get(
                        f"/v1/orders/{order['id']}", headers=bearer(order["session_token"])
                    )
                    assert read.status_code == 200, read.text
                    assert read.json()["status"] == "awaiting_address", read.json()
                    assert read.json()["deposit_address"] is None, read.json()
        finally:
            await order_api.stop()


async def _asked_twice(asked: list[str], orders: list[dict[str, Any]]) -> bool:
    return all(asked.count(order["id"]) >= 2 for order in orders)
