"""The operator workflow through the HTTP API (in process; wallet-pool unreachable, its ``wallet.assigned``
events posted as it would): staff accounts and roles, the takeable list, take (and the take race),
driving, giving back, escalations, the assignment timeout, workload stats and the audit rows it all writes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from coin_addresses import demo_address
from desk_contracts.events import EVENTS, OrdersUntouched
from order_api.__main__ import main as order_api_cli
from order_api.audit.models import AuditLog
from order_api.audit.service import verify_audit_chain
from order_api.context import context_of
from order_api.customers.models import Customer
from order_api.db import SCHEMA, outbox
from order_api.operators import workflow
from order_api.operators.assignment import auto_assign, lapse_untouched_assignments
from order_api.operators.errors import OperatorInactiveError
from order_api.operators.models import Operator, OrderAssignment
from order_api.operators.service import OperatorPrincipal
from order_api.operators.timeouts import return_idle_assignments
from order_api.orders.models import Order, OrderEvent
from order_api.orders.untouched import report_untouched_orders
from order_api.testing import (
    PAYOUT_USDT,
    ApiKeys,
    OrderApi,
    OrderApiRunner,
    TwoRoleDatabase,
    completion_body,
    embedded_order_api,
    order_body,
)
from servicekit.db import Database, utcnow
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import eventually, metric_samples

PAYOUT_BTC = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
ORDERS = {  # what a customer sends → (what they receive, network, payout address, a fitting amount)
    "BTC": {"to_currency": "USDT", "to_network": "TRC20", "payout_address": PAYOUT_USDT, "amount": "0.05"},
    "ETH": {"to_currency": "USDT", "to_network": "TRC20", "payout_address": PAYOUT_USDT, "amount": "1"},
    "USDT": {"to_currency": "BTC", "payout_address": PAYOUT_BTC, "amount": "100", "from_network": "TRC20"},
}


@pytest.fixture
async def empty_wallet_pool() -> AsyncIterator[PeerSettings]:
    """A stand-in wallet-pool whose pools are all busy: it queues every order at once (the real one's
    answer when no address is free), so orders wait for ``wallet.assigned`` without client retries."""

    async def allocate(request: web.Request) -> web.Response:
        body = await request.json()
        queued = {"status": "queued", "position": 1, "estimated_wait_seconds": 60.0}
        return web.json_response({**body, **queued}, status=202)

    app = web.Application()
    app.router.add_post("/v1/allocations", allocate)
    async with TestServer(app, host="127.0.0.1") as server:
        yield PeerSettings(url=str(server.make_url("")).rstrip("/"))


@pytest.fixture
async def api(
    order_api: OrderApiRunner, db_session: AsyncSession, empty_wallet_pool: PeerSettings
) -> AsyncIterator[OrderApi]:
    """order-api on ``db_session`` (rolled back after the test), next to the busy stand-in wallet-pool."""
    async with order_api(session=db_session, wallet_pool=empty_wallet_pool) as running:
        yield running


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    role: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def hire(
    api: OrderApi, api_keys: ApiKeys, *, role: str = "operator", telegram_user_id: int | None = None
) -> Staff:
    """A new member of staff, created with the admin API key."""
    body: dict[str, Any] = {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role}
    if telegram_user_id is not None:
        body["telegram_user_id"] = telegram_user_id
    response = await api.client.post("/v1/admin/operators", json=body, headers=bearer(api_keys.admin))
    assert response.status_code == 201, response.text
    created = response.json()
    return Staff(id=created["id"], name=created["name"], role=role, token=created["token"])


async def order_awaiting_deposit(
    api: OrderApi,
    api_keys: ApiKeys,
    *,
    currency: str = "BTC",
    amount: str | None = None,
    address: str | None = None,
    email: str | None = None,
) -> dict[str, Any]:
    """A customer's order (queued: wallet-pool's pools are busy; version 2, after ``awaiting_address``), then
    wallet-pool's ``wallet.assigned`` (version 3)."""
    email = email or f"c.{uuid.uuid4().hex[:10]}@example.com"
    body = {"email": email, "from_currency": currency, **ORDERS[currency]}
    if amount is not None:
        body["amount"] = amount
    response = await api.client.post("/v1/orders", json=body)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    network = order["from_network"]
    address = address or demo_address(currency=currency, network=network, seed=uuid.uuid4().int % 10**9)
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "wallet.assigned",
        "source": "wallet-pool",
        "occurred_at": utcnow().isoformat(),
        "aggregate_id": order["id"],
        "payload": {"order_id": order["id"], "currency": currency, "network": network, "address": address},
    }
    assigned = await api.client.post("/v1/events", json=envelope, headers=bearer(api_keys.wallet_pool))
    assert assigned.json()["status"] == "processed", assigned.text
    assert (order["status"], order["version"]) == ("queued", 2)
    return {**order, "status": "awaiting_deposit", "deposit_address": address, "version": 3}


async def take(api: OrderApi, staff: Staff, order: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(f"/v1/operator/orders/{order['id']}/take", headers=staff.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def set_status(
    api: OrderApi, staff: Staff, order: dict[str, Any], status: str, **headers: str
) -> dict[str, Any]:
    response = await api.client.post(
        f"/v1/operator/orders/{order['id']}/status",
        json=completion_body(order) if status == "completed" else {"status": status},
        headers={**staff.auth, **headers},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def outbox_payloads(session: AsyncSession, event_type: str) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(outbox.c.payload).where(outbox.c.event_type == event_type).order_by(outbox.c.created_at)
    )
    return list(rows.scalars())


async def audit_rows(session: AsyncSession, **where: Any) -> list[AuditLog]:
    query = select(AuditLog).filter_by(**where).order_by(AuditLog.id)
    return list((await session.execute(query)).scalars())


# --- staff accounts and roles ---------------------------------------------------------------------------


async def test_an_operator_token_is_shown_once_and_stored_only_as_its_hash(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys, telegram_user_id=7001)
    assert operator.token.startswith("op_")
    stored = await db_session.get(Operator, operator.id)
    assert stored is not None
    assert stored.token_hash == hashlib.sha256(operator.token.encode()).hexdigest()
    listed = await api.client.get("/v1/admin/operators", headers=bearer(api_keys.admin))
    assert listed.status_code == 200
    assert operator.token not in listed.text
    assert [o["telegram_user_id"] for o in listed.json()["items"] if o["id"] == operator.id] == [7001]
    mine = await api.client.get("/v1/operator/orders/mine", headers=operator.auth)
    assert mine.status_code == 200, mine.text
    taken = await api.client.post(
        "/v1/admin/operators",
        json={"name": "Other", "telegram_user_id": 7001},
        headers=bearer(api_keys.admin),
    )
    assert taken.status_code == 409
    assert taken.json()["code"] == "operator_telegram_id_taken"


async def test_every_operator_route_checks_the_token_and_the_role(api: OrderApi, api_keys: ApiKeys) -> None:
    operator = await hire(api, api_keys)
    support = await hire(api, api_keys, role="support")
    admin = await hire(api, api_keys, role="admin")
    order = await order_awaiting_deposit(api, api_keys)

    missing = await api.client.get("/v1/operator/orders")
    assert (missing.status_code, missing.json()["code"]) == (401, "operator_token_missing")
    for token in ("op_" + "x" * 43, "adm_" + "y" * 43, order["session_token"]):
        refused = await api.client.get("/v1/operator/orders", headers=bearer(token))
        assert (refused.status_code, refused.json()["code"]) == (401, "operator_token_invalid")
    wrong_key = await api.client.get("/v1/operator/orders", headers=bearer(api_keys.wallet_pool))
    assert (wrong_key.status_code, wrong_key.json()["code"]) == (403, "operator_forbidden")

    body = {"name": "Eve", "role": "admin"}
    for staff in (operator, support):
        refused = await api.client.post("/v1/admin/operators", json=body, headers=staff.auth)
        assert (refused.status_code, refused.json()["code"]) == (403, "operator_forbidden")
        assert (await api.client.get("/v1/audit", headers=staff.auth)).status_code == 403
    assert (await api.client.post("/v1/admin/operators", json=body, headers=admin.auth)).status_code == 201
    assert (await api.client.get("/v1/audit", headers=admin.auth)).status_code == 200

    support_take = await api.client.post(f"/v1/operator/orders/{order['id']}/take", headers=support.auth)
    assert (support_take.status_code, support_take.json()["code"]) == (403, "operator_forbidden")
    escalations = "/v1/operator/escalations"
    assert (await api.client.get(escalations, headers=operator.auth)).status_code == 403
    assert (await api.client.get(escalations, headers=support.auth)).status_code == 200
    admin_key_take = await api.client.post(
        f"/v1/operator/orders/{order['id']}/take", headers=bearer(api_keys.admin)
    )
    assert admin_key_take.status_code == 403  # the admin key is no operator account: it holds no orders
    assert (await api.client.get("/v1/operator/orders", headers=support.auth)).status_code == 200


async def test_a_revoked_or_rotated_token_stops_working_at_once(api: OrderApi, api_keys: ApiKeys) -> None:
    operator = await hire(api, api_keys)
    admin = bearer(api_keys.admin)
    rotated = await api.client.post(f"/v1/admin/operators/{operator.id}/rotate-token", headers=admin)
    assert rotated.status_code == 200
    new_token = rotated.json()["token"]
    old = await api.client.get("/v1/operator/orders", headers=operator.auth)
    assert (old.status_code, old.json()["code"]) == (401, "operator_token_invalid")
    assert (await api.client.get("/v1/operator/orders", headers=bearer(new_token))).status_code == 200

    revoked = await api.client.post(f"/v1/admin/operators/{operator.id}/revoke-token", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["token_active"] is False
    assert (await api.client.get("/v1/operator/orders", headers=bearer(new_token))).status_code == 401
    unknown = await api.client.post(f"/v1/admin/operators/{uuid.uuid4()}/revoke-token", headers=admin)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "operator_not_found")


async def test_tokens_expire_after_the_configured_days(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys
) -> None:
    async with order_api(session=db_session, operator_token_days=7) as api:
        operator = await hire(api, api_keys)
        stored = await db_session.get(Operator, operator.id)
        assert stored is not None
        assert stored.token_expires_at is not None
        assert timedelta(days=6) < stored.token_expires_at - utcnow() <= timedelta(days=7)
        await db_session.execute(
            update(Operator).where(Operator.id == operator.id).values(token_expires_at=utcnow())
        )
        assert (await api.client.get("/v1/operator/orders", headers=operator.auth)).status_code == 401


async def test_the_telegram_gateway_acts_for_the_linked_operator_and_says_so(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator = await hire(api, api_keys, telegram_user_id=424242)
    order = await order_awaiting_deposit(api, api_keys)
    gateway = bearer(api_keys.telegram_gateway)
    taken = await api.client.post(
        f"/v1/operator/orders/{order['id']}/take", headers={**gateway, "X-Operator-Telegram-Id": "424242"}
    )
    assert taken.status_code == 200, taken.text
    assert taken.json()["operator_id"] == operator.id
    [row] = await audit_rows(db_session, action="order.taken", target_id=order["id"])
    assert (row.actor, row.channel) == (f"operator:{operator.id}", "telegram")
    [payload] = await outbox_payloads(db_session, "order.taken")
    assert (payload["channel"], payload["operator_name"]) == ("telegram", operator.name)
    event = await db_session.scalar(
        select(OrderEvent).where(OrderEvent.order_id == order["id"], OrderEvent.to_status == "in_progress")
    )
    assert event is not None
    assert event.channel == "telegram"

    for headers in ({"X-Operator-Telegram-Id": "1"}, {}):
        refused = await api.client.get("/v1/operator/orders", headers={**gateway, **headers})
        assert (refused.status_code, refused.json()["code"]) == (403, "telegram_operator_unknown")
    deactivated = await api.client.patch(
        f"/v1/admin/operators/{operator.id}", json={"active": False}, headers=bearer(api_keys.admin)
    )
    assert deactivated.json()["active"] is False
    telegram = await api.client.get(
        "/v1/operator/orders", headers={**gateway, "X-Operator-Telegram-Id": "424242"}
    )
    assert telegram.status_code == 403
    assert (await api.client.get("/v1/operator/orders", headers=operator.auth)).status_code == 401


async def test_acting_for_an_operator_reaches_only_the_bots_work_whatever_their_role(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    """A leaked gateway key naming an admin (linked by an admin's edit) is an operator at work, no more."""
    admin = await hire(api, api_keys, role="admin", telegram_user_id=515151)
    support = await hire(api, api_keys, role="support", telegram_user_id=525252)
    holder = await hire(api, api_keys)
    as_admin = {**bearer(api_keys.telegram_gateway), "X-Operator-Telegram-Id": "515151"}
    as_support = {**bearer(api_keys.telegram_gateway), "X-Operator-Telegram-Id": "525252"}
    mine, theirs = await order_awaiting_deposit(api, api_keys), await order_awaiting_deposit(api, api_keys)
    await take(api, holder, theirs)

    # the bot's work, acted for
    assert (await api.client.get("/v1/operator/orders", headers=as_admin)).status_code == 200
    assert (await api.client.get("/v1/operator/orders", headers=as_support)).status_code == 200
    taken = await api.client.post(f"/v1/operator/orders/{mine['id']}/take", headers=as_admin)
    assert taken.status_code == 200, taken.text
    assert (await api.client.get("/v1/operator/orders/mine", headers=as_admin)).json()["items"][0]["id"] == (
        mine["id"]
    )
    assert (await api.client.get(f"/v1/operator/orders/{mine['id']}", headers=as_admin)).status_code == 200
    escalated = await api.client.post(
        f"/v1/operator/orders/{mine['id']}/escalate", json={"comment": "Paid twice?"}, headers=as_admin
    )
    assert escalated.status_code == 201, escalated.text
    released = await api.client.post(f"/v1/operator/orders/{mine['id']}/release", headers=as_admin)
    assert (released.status_code, released.json()["status"]) == (200, "awaiting_deposit")
    await api.client.post(f"/v1/operator/orders/{mine['id']}/take", headers=as_admin)
    completed = await api.client.post(
        f"/v1/operator/orders/{mine['id']}/status", json=completion_body(mine), headers=as_admin
    )
    assert (completed.status_code, completed.json()["status"]) == (200, "completed")
    # ... with an operator's powers only: an admin acted for drives no one else's order
    foreign = await api.client.post(
        f"/v1/operator/orders/{theirs['id']}/status", json={"status": "cancelled"}, headers=as_admin
    )
    assert (foreign.status_code, foreign.json()["code"]) == (409, "order_not_held")

    # every admin and support-only route (and the rest of the REST surface) refuses the identity acted for
    escalation = f"/v1/operator/escalations/{escalated.json()['id']}"
    refused_routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/admin/operators", {"name": "Eve", "role": "admin"}),
        ("GET", "/v1/admin/operators", None),
        ("GET", f"/v1/admin/operators/{holder.id}", None),
        ("PATCH", f"/v1/admin/operators/{holder.id}", {"role": "admin"}),
        ("POST", f"/v1/admin/operators/{holder.id}/rotate-token", None),
        ("POST", f"/v1/admin/operators/{holder.id}/revoke-token", None),
        ("POST", f"/v1/admin/operators/{holder.id}/telegram-link-code", None),
        ("GET", "/v1/audit", None),
        ("GET", "/v1/operator/escalations", None),
        ("POST", f"{escalation}/comments", {"comment": "Looking"}),
        ("POST", f"{escalation}/resolve", {"comment": "Refunded"}),
        ("GET", "/v1/operator/stats", None),
        ("GET", "/v1/stats/pool", None),
    ]
    for headers in (as_admin, as_support):
        for method, path, body in refused_routes:
            refused = await api.client.request(method, path, json=body, headers=headers)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert refused.json()["code"] == "acted_for_identity_forbidden", (method, path)
    listed = await api.client.get("/v1/admin/operators", headers=bearer(api_keys.admin))
    assert [o["name"] for o in listed.json()["items"]].count("Eve") == 0
    assert [o["role"] for o in listed.json()["items"] if o["id"] == holder.id] == ["operator"]
    # the same people with their own tokens keep their roles' routes
    assert (await api.client.get("/v1/audit", headers=admin.auth)).status_code == 200
    assert (await api.client.get("/v1/operator/escalations", headers=support.auth)).status_code == 200


async def test_the_create_operator_command_bootstraps_an_admin(
    order_api: OrderApiRunner,
    own_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORDER_API_DATABASE_URL", own_database_url)
    assert (
        await asyncio.to_thread(order_api_cli, ["create-operator", "--name", "Root", "--role", "admin"]) == 0
    )
    token = json.loads(capsys.readouterr().out)["token"]
    async with order_api(database_url=own_database_url) as api:
        created = await api.client.post("/v1/admin/operators", json={"name": "Anna"}, headers=bearer(token))
        assert created.status_code == 201, created.text
        audit = await api.client.get("/v1/audit", headers=bearer(token))
    assert [(r["action"], r["actor_role"], r["channel"]) for r in audit.json()["items"]] == [
        ("operator.created", "admin", "rest"),
        ("operator.created", "admin", "cli"),
    ]


# --- finding orders ---------------------------------------------------------------------------------------


async def test_the_takeable_list_filters_and_its_cursor_survives_changes(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    operator = await hire(api, api_keys)
    btc = [await order_awaiting_deposit(api, api_keys, amount=f"0.0{n}") for n in range(1, 6)]
    eth = await order_awaiting_deposit(api, api_keys, currency="ETH")
    queued = (
        await api.client.post(
            "/v1/orders", json={"email": "q@example.com", "from_currency": "BTC", **ORDERS["BTC"]}
        )
    ).json()
    auth = operator.auth

    async def listing(**params: Any) -> dict[str, Any]:
        response = await api.client.get("/v1/operator/orders", params=params, headers=auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    every = await listing(limit=100)
    assert [o["id"] for o in every["items"]] == [o["id"] for o in [*btc, eth]]  # oldest first; not queued
    assert every["items"][0]["payout_address"] == PAYOUT_USDT  # staff see where to pay out
    assert every["next_cursor"] is None
    assert [o["id"] for o in (await listing(currency="eth"))["items"]] == [eth["id"]]
    in_range = await listing(currency="BTC", amount_min="0.02", amount_max="0.04")
    assert [o["amount"] for o in in_range["items"]] == ["0.02", "0.03", "0.04"]
    window = await listing(created_from=btc[1]["created_at"], created_to=btc[3]["created_at"])
    assert [o["id"] for o in window["items"]] == [btc[1]["id"], btc[2]["id"]]
    assert [o["id"] for o in (await listing(status="queued"))["items"]] == [queued["id"]]
    bad = await api.client.get("/v1/operator/orders", params={"cursor": "nonsense"}, headers=auth)
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "cursor")
    for params in ({"created_from": "2026-01-01T00:00:00"}, {"amount_max": "1e30"}):  # no zone; too large
        assert (await api.client.get("/v1/operator/orders", params=params, headers=auth)).status_code == 422

    # Page through while orders change: one on page 1 is taken, one further on is taken, new ones arrive.
    first = await listing(limit=2)
    await take(api, operator, btc[0])
    await take(api, operator, btc[3])
    newer = [await order_awaiting_deposit(api, api_keys) for _ in range(2)]
    seen = [o["id"] for o in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = await listing(limit=2, cursor=cursor)
        seen.extend(o["id"] for o in page["items"])
        cursor = page["next_cursor"]
    expected = [btc[0], btc[1], btc[2], btc[4], eth, *newer]
    assert seen == [o["id"] for o in expected]  # nothing skipped, nothing twice; btc[3] was taken meanwhile

    mine = await api.client.get("/v1/operator/orders/mine", headers=auth)
    assert [o["id"] for o in mine.json()["items"]] == [btc[0]["id"], btc[3]["id"]]
    assert {o["operator_name"] for o in mine.json()["items"]} == {operator.name}


async def test_an_order_shows_the_earlier_orders_of_its_deposit_address(
    api: OrderApi, api_keys: ApiKeys
) -> None:
    operator = await hire(api, api_keys)
    earlier = await order_awaiting_deposit(api, api_keys)
    await take(api, operator, earlier)
    await set_status(api, operator, earlier, "completed")
    later = await order_awaiting_deposit(api, api_keys, address=earlier["deposit_address"])
    response = await api.client.get(f"/v1/operator/orders/{later['id']}", headers=operator.auth)
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["deposit_address"] == earlier["deposit_address"]
    assert [(h["order_id"], h["status"]) for h in detail["address_history"]] == [(earlier["id"], "completed")]
    assert detail["escalation"] is None
    missing = await api.client.get(f"/v1/operator/orders/{uuid.uuid4()}", headers=operator.auth)
    assert (missing.status_code, missing.json()["code"]) == (404, "order_not_found")


async def every_page(api: OrderApi, path: str, headers: dict[str, str], **params: Any) -> list[list[str]]:
    """The ids of each page of a list, following its cursors to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        response = await api.client.get(
            path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_staff_and_escalations_are_listed_a_page_at_a_time(api: OrderApi, api_keys: ApiKeys) -> None:
    admin = bearer(api_keys.admin)
    hired = [await hire(api, api_keys) for _ in range(2)]
    support = await hire(api, api_keys, role="support")
    everyone = [o for page in await every_page(api, "/v1/admin/operators", admin, limit=50) for o in page]
    pages = await every_page(api, "/v1/admin/operators", admin, limit=2)
    assert [o for page in pages for o in page] == everyone  # oldest first, nothing skipped or repeated
    assert everyone[-3:] == [hired[0].id, hired[1].id, support.id]
    assert all(len(page) == 2 for page in pages[:-1])

    raised = []
    for _ in range(3):
        order = await order_awaiting_deposit(api, api_keys)
        await take(api, hired[0], order)
        escalate = f"/v1/operator/orders/{order['id']}/escalate"
        escalated = await api.client.post(escalate, json={"comment": "Look"}, headers=hired[0].auth)
        raised.append(escalated.json()["id"])
    assert await every_page(api, "/v1/operator/escalations", support.auth, limit=2) == [
        raised[:2],
        raised[2:],
    ]

    # A cursor is for its own list only: another list's is refused, naming the parameter.
    first = await api.client.get("/v1/operator/escalations", params={"limit": 1}, headers=support.auth)
    for path in ("/v1/operator/orders", "/v1/admin/operators", "/v1/audit"):
        refused = await api.client.get(path, params={"cursor": first.json()["next_cursor"]}, headers=admin)
        assert refused.status_code == 422, (path, refused.text)
        assert [(e["field"], e["type"]) for e in refused.json()["errors"]] == [("cursor", "invalid_cursor")]
    for limit in (0, 201):
        too_many = await api.client.get(
            "/v1/operator/escalations", params={"limit": limit}, headers=support.auth
        )
        assert too_many.status_code == 422


# --- taking and driving -----------------------------------------------------------------------------------


async def test_fifty_concurrent_takers_one_winner(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(database_url=own_database_url, wallet_pool=empty_wallet_pool) as api:
        takers = [await hire(api, api_keys) for _ in range(50)]
        order = await order_awaiting_deposit(api, api_keys)

        responses = await asyncio.gather(
            *(api.client.post(f"/v1/operator/orders/{order['id']}/take", headers=t.auth) for t in takers)
        )
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker() as session:
            taken_events = await outbox_payloads(session, "order.taken")
            take_audits = await audit_rows(session, action="order.taken")
            in_progress_steps = await session.scalar(
                select(func.count()).select_from(OrderEvent).where(OrderEvent.to_status == "in_progress")
            )
            stored = await session.get(Order, order["id"])
            broken = await verify_audit_chain(session)

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 409: 49}, statuses
    [won] = [r.json() for r in responses if r.status_code == 200]
    winner = next(t for t in takers if t.id == won["operator_id"])
    for lost in (r.json() for r in responses if r.status_code == 409):
        assert lost["code"] == "order_already_taken"
        assert lost["held_by"] == {"operator_id": winner.id, "name": winner.name}
    assert [p["operator_id"] for p in taken_events] == [winner.id]
    assert [(a.actor, a.target_id) for a in take_audits] == [(f"operator:{winner.id}", order["id"])]
    assert in_progress_steps == 1
    assert stored is not None
    assert (stored.status, stored.operator_id, stored.version) == ("in_progress", winner.id, 4)
    assert broken is None


async def test_only_the_holder_drives_an_order_with_if_match_and_the_lifecycle_table(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    holder, other = await hire(api, api_keys), await hire(api, api_keys)
    order = await order_awaiting_deposit(api, api_keys)
    url = f"/v1/operator/orders/{order['id']}/status"

    untaken = await api.client.post(url, json={"status": "completed"}, headers=holder.auth)
    assert (untaken.status_code, untaken.json()["code"]) == (409, "order_not_held")
    taken = await take(api, holder, order)
    assert (taken["status"], taken["version"]) == ("in_progress", 4)
    assert (await take(api, holder, order))["version"] == 4  # taking it again changes nothing
    again = await api.client.post(f"/v1/operator/orders/{order['id']}/take", headers=other.auth)
    assert again.json()["held_by"] == {"operator_id": holder.id, "name": holder.name}

    not_mine = await api.client.post(url, json={"status": "completed"}, headers=other.auth)
    assert (not_mine.status_code, not_mine.json()["code"]) == (409, "order_not_held")
    assert not_mine.json()["held_by"]["operator_id"] == holder.id
    stale = await api.client.post(url, json={"status": "completed"}, headers={**holder.auth, "If-Match": "3"})
    assert (stale.status_code, stale.json()["code"]) == (412, "order_version_mismatch")
    expired = await api.client.post(url, json={"status": "expired"}, headers=holder.auth)
    assert expired.status_code == 422
    done = await set_status(api, holder, order, "completed", **{"If-Match": "4"})
    assert (done["status"], done["version"], done["operator_id"]) == ("completed", 5, holder.id)
    after = await api.client.post(url, json={"status": "cancelled"}, headers=holder.auth)
    assert (after.status_code, after.json()["code"]) == (409, "order_transition_not_allowed")

    [closed] = await outbox_payloads(db_session, "order.closed")
    assert closed["order_id"] == order["id"]
    destination = await db_session.scalar(
        select(outbox.c.destination).where(outbox.c.event_type == "order.closed")
    )
    assert destination == "wallet-pool"
    *_, changed = await outbox_payloads(db_session, "order.status_changed")  # after "address assigned"
    assert {k: changed[k] for k in ("status", "from_status", "operator_id", "operator_name", "actor")} == {
        "status": "completed",
        "from_status": "in_progress",
        "operator_id": holder.id,
        "operator_name": holder.name,
        "actor": f"operator:{holder.id}",
    }
    customer = await db_session.scalar(
        select(Customer).join(Order, Order.customer_id == Customer.id).where(Order.id == order["id"])
    )
    assert customer is not None
    assert customer.completed_orders == 1  # it counts towards the customer's queue priority


async def test_an_admin_may_drive_any_order(api: OrderApi, api_keys: ApiKeys) -> None:
    holder, admin = await hire(api, api_keys), await hire(api, api_keys, role="admin")
    order, unheld = await order_awaiting_deposit(api, api_keys), await order_awaiting_deposit(api, api_keys)
    await take(api, holder, order)
    cancelled = await set_status(api, admin, order, "cancelled")
    assert (cancelled["status"], cancelled["operator_id"]) == ("cancelled", holder.id)
    by_key = await api.client.post(
        f"/v1/operator/orders/{unheld['id']}/status",
        json={"status": "cancelled"},
        headers=bearer(api_keys.admin),
    )
    assert by_key.status_code == 200, by_key.text
    not_paid = await order_awaiting_deposit(api, api_keys)
    refused = await api.client.post(
        f"/v1/operator/orders/{not_paid['id']}/status", json={"status": "completed"}, headers=admin.auth
    )
    assert (refused.status_code, refused.json()["code"]) == (409, "order_transition_not_allowed")


async def test_giving_an_order_back_makes_it_takeable_again(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    holder, other = await hire(api, api_keys), await hire(api, api_keys)
    order = await order_awaiting_deposit(api, api_keys)
    await take(api, holder, order)
    release = f"/v1/operator/orders/{order['id']}/release"
    assert (await api.client.post(release, headers=other.auth)).json()["code"] == "order_not_held"
    given_back = await api.client.post(release, json={"comment": "Shift over"}, headers=holder.auth)
    assert given_back.status_code == 200, given_back.text
    assert (given_back.json()["status"], given_back.json()["operator_id"]) == ("awaiting_deposit", None)
    [released] = await outbox_payloads(db_session, "order.released")
    assert (released["previous_operator_id"], released["comment"]) == (holder.id, "Shift over")
    takeable = await api.client.get("/v1/operator/orders", headers=other.auth)
    assert order["id"] in [o["id"] for o in takeable.json()["items"]]
    assert (await take(api, other, order))["operator_id"] == other.id
    via_status = await set_status(api, other, order, "awaiting_deposit")
    assert via_status["operator_id"] is None
    assert len(await outbox_payloads(db_session, "order.released")) == 2
    assert await outbox_payloads(db_session, "order.closed") == []  # giving back keeps the address


async def test_an_escalation_flags_the_order_until_support_resolves_it(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    holder, other = await hire(api, api_keys), await hire(api, api_keys)
    support = await hire(api, api_keys, role="support")
    order = await order_awaiting_deposit(api, api_keys)
    await take(api, holder, order)
    escalate = f"/v1/operator/orders/{order['id']}/escalate"
    refused = await api.client.post(escalate, json={"comment": "?"}, headers=other.auth)
    assert refused.json()["code"] == "order_not_held"
    raised = await api.client.post(escalate, json={"comment": "Paid twice?"}, headers=holder.auth)
    assert raised.status_code == 201, raised.text
    escalation = raised.json()
    twice = await api.client.post(escalate, json={"comment": "Again"}, headers=holder.auth)
    assert (twice.status_code, twice.json()["code"]) == (409, "order_already_escalated")

    queue = await api.client.get("/v1/operator/escalations", headers=support.auth)
    assert [e["id"] for e in queue.json()["items"]] == [escalation["id"]]
    assert queue.json()["next_cursor"] is None
    detail = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=support.auth)).json()
    assert detail["escalated"] is True
    assert [c["body"] for c in detail["escalation"]["comments"]] == ["Paid twice?"]

    thread = f"/v1/operator/escalations/{escalation['id']}"
    assert (
        await api.client.post(f"{thread}/comments", json={"comment": "Looking"}, headers=support.auth)
    ).status_code == 201
    outsider = await api.client.post(f"{thread}/comments", json={"comment": "Hi"}, headers=other.auth)
    assert outsider.json()["code"] == "order_not_held"
    assert (
        await api.client.post(f"{thread}/resolve", json={"comment": "x"}, headers=holder.auth)
    ).status_code == 403
    resolved = await api.client.post(f"{thread}/resolve", json={"comment": "Refunded"}, headers=support.auth)
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert [(c["author_role"], c["body"]) for c in resolved.json()["comments"]] == [
        ("operator", "Paid twice?"),
        ("support", "Looking"),
        ("support", "Refunded"),
    ]
    again = await api.client.post(f"{thread}/resolve", json={"comment": "x"}, headers=support.auth)
    assert (again.status_code, again.json()["code"]) == (409, "escalation_not_open")
    listed = await api.client.get("/v1/operator/orders/mine", headers=holder.auth)
    assert listed.json()["items"][0]["escalated"] is False

    [raised_event] = await outbox_payloads(db_session, "order.escalated")
    assert {k: raised_event[k] for k in ("escalation_id", "comment", "operator_name", "status")} == {
        "escalation_id": escalation["id"],
        "comment": "Paid twice?",
        "operator_name": holder.name,
        "status": "in_progress",
    }
    [resolved_event] = await outbox_payloads(db_session, "order.escalation_resolved")
    assert (resolved_event["actor_role"], resolved_event["comment"]) == ("support", "Refunded")


# --- assignment timeout ---------------------------------------------------------------------------------


async def test_an_untouched_assignment_times_out_back_to_the_pool(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(
        database_url=own_database_url,
        wallet_pool=empty_wallet_pool,
        sweep_seconds=0.1,
        assignment_timeout_minutes=30,
        assignment_timeout_by_currency={"ETH": 1},
    ) as api:
        operator = await hire(api, api_keys)
        btc, eth = (
            await order_awaiting_deposit(api, api_keys),
            await order_awaiting_deposit(api, api_keys, currency="ETH"),
        )
        await take(api, operator, btc)
        await take(api, operator, eth)
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker.begin() as session:  # both untouched for 6 minutes
            await session.execute(update(OrderEvent).values(created_at=utcnow() - timedelta(minutes=6)))

        async def holders() -> dict[str, str | None]:
            async with database.sessionmaker() as session:
                rows = await session.execute(select(Order.id, Order.operator_id))
                return dict(rows.tuples().all())

        await eventually(holders, until=lambda h: h[eth["id"]] is None, message="ETH assignment timed out")
        assert (await holders())[btc["id"]] == operator.id  # BTC's limit is the default 30 minutes
        async with database.sessionmaker() as session:
            [timed_out] = await outbox_payloads(session, "order.assignment_timed_out")
            [audit] = await audit_rows(session, action="order.assignment_timed_out")
            eth_order = await session.get(Order, eth["id"])
        takeable = await api.client.get("/v1/operator/orders", headers=operator.auth)
    assert (timed_out["order_id"], timed_out["status"]) == (eth["id"], "awaiting_deposit")
    assert timed_out["comment"] == "Untouched for 1 minute."  # the operators' card shows it as it is
    assert (timed_out["previous_operator_id"], timed_out["actor"]) == (
        operator.id,
        "system:assignment-timeout",
    )
    assert (audit.actor, audit.actor_role, audit.channel) == ("system:assignment-timeout", "system", "system")
    assert eth_order is not None
    assert eth_order.expires_at is not None
    assert eth_order.expires_at > utcnow() + timedelta(minutes=50)  # a fresh deposit window
    assert [o["id"] for o in takeable.json()["items"]] == [eth["id"]]


# --- stats and audit --------------------------------------------------------------------------------------


async def test_stats_compare_my_workload_with_the_anonymised_team(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna, boris = await hire(api, api_keys), await hire(api, api_keys)
    orders = [await order_awaiting_deposit(api, api_keys) for _ in range(4)]
    for staff, order, status in (
        (anna, orders[0], "completed"),
        (anna, orders[1], "cancelled"),
        (boris, orders[2], "completed"),
    ):
        await take(api, staff, order)
        await set_status(api, staff, order, status)
    await take(api, anna, orders[3])
    closed = {o["id"] for o in orders[:3]}
    for stored in await db_session.scalars(select(Order).where(Order.id.in_(closed))):
        assert stored.closed_at is not None
        await db_session.execute(  # taken exactly ten minutes before it closed
            update(OrderEvent)
            .where(OrderEvent.order_id == stored.id, OrderEvent.to_status == "in_progress")
            .values(created_at=stored.closed_at - timedelta(minutes=10))
        )

    response = await api.client.get("/v1/operator/stats", headers=anna.auth)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["mine"] == {
        "processed": 2,
        "completed": 1,
        "cancelled": 1,
        "average_handling_seconds": 600.0,
        "open_orders": 1,
    }
    team = stats["team"]
    assert (team["processed"], team["open_orders"], team["operators"]) == (3, 1, 2)
    assert team["processed_per_operator"] == [2, 1]
    assert (team["my_rank"], team["average_handling_seconds"]) == (1, 600.0)
    assert anna.id not in response.text
    assert boris.name not in response.text
    boris_stats = (await api.client.get("/v1/operator/stats", headers=boris.auth)).json()
    assert (boris_stats["mine"]["processed"], boris_stats["team"]["my_rank"]) == (1, 2)


async def test_every_staff_action_is_audited_with_actor_channel_and_correlation_id(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator, support = await hire(api, api_keys), await hire(api, api_keys, role="support")
    order = await order_awaiting_deposit(api, api_keys)
    taken = await api.client.post(f"/v1/operator/orders/{order['id']}/take", headers=operator.auth)
    await api.client.post(f"/v1/operator/orders/{order['id']}/release", headers=operator.auth)
    await take(api, operator, order)
    escalation = (
        await api.client.post(
            f"/v1/operator/orders/{order['id']}/escalate", json={"comment": "Help"}, headers=operator.auth
        )
    ).json()
    await api.client.post(
        f"/v1/operator/escalations/{escalation['id']}/resolve", json={"comment": "Done"}, headers=support.auth
    )
    await set_status(api, operator, order, "completed")
    await api.client.post(f"/v1/admin/operators/{operator.id}/revoke-token", headers=bearer(api_keys.admin))

    audit = await api.client.get(
        "/v1/audit", params={"order_id": order["id"]}, headers=bearer(api_keys.admin)
    )
    assert audit.status_code == 200, audit.text
    trail = list(reversed(audit.json()["items"]))  # newest first → oldest first
    # wallet-pool assigning the address is in the order's history, not in the audit chain (see lifecycle.py)
    assert [(r["action"], r["actor_role"]) for r in trail] == [
        ("order.taken", "operator"),
        ("order.released", "operator"),
        ("order.taken", "operator"),
        ("order.escalated", "operator"),
        ("order.escalation_resolved", "support"),
        ("order.status_changed", "operator"),
    ]
    assert trail[0]["correlation_id"] == taken.headers["X-Correlation-ID"]
    assert trail[0]["channel"] == "rest"
    recorded = completion_body(order)["transaction"]
    assert trail[-1]["parameters"] == {
        "from_status": "in_progress",
        "to_status": "completed",
        "version": 7,
        "comment": None,
        "transaction": {
            "deposit_tx_hash": recorded["deposit"]["tx_hash"],
            "deposit_amount": order["amount"],
            "deposit_seen_at": trail[-1]["parameters"]["transaction"]["deposit_seen_at"],
            "payout_tx_hash": recorded["payout"]["tx_hash"],
            "payout_amount": "1000",
            "payout_network_fee": None,
            "payment": "exact",
        },
    }
    mine = await api.client.get(
        "/v1/audit", params={"actor": f"operator:{operator.id}"}, headers=bearer(api_keys.admin)
    )
    assert [r["action"] for r in mine.json()["items"]][-1] == "order.taken"
    accounts = await audit_rows(db_session, target_type="operator", target_id=operator.id)
    assert [(r.action, r.actor) for r in accounts] == [
        ("operator.created", "api-key:admin"),
        ("operator.token_revoked", "api-key:admin"),
    ]
    paged = await api.client.get("/v1/audit", params={"limit": 2}, headers=bearer(api_keys.admin))
    older = await api.client.get(
        "/v1/audit",
        params={"limit": 2, "cursor": paged.json()["next_cursor"]},
        headers=bearer(api_keys.admin),
    )
    assert older.json()["items"][0]["id"] == paged.json()["items"][-1]["id"] - 1
    assert await verify_audit_chain(db_session) is None


# --- as deployed: the service's runtime role -------------------------------------------------------------


async def test_the_desk_works_as_its_runtime_role_and_audits_every_action(
    order_api: OrderApiRunner,
    two_role_database: TwoRoleDatabase,
    api_keys: ApiKeys,
    empty_wallet_pool: PeerSettings,
) -> None:
    """The service connected as the role the migrations granted (not the tables' owner): intake, the events
    it receives, the operator workflow (escalation comments included, a table with a sequence) and the audit
    rows all of it appends."""
    runtime = two_role_database.runtime_url
    async with order_api(database_url=runtime, wallet_pool=empty_wallet_pool) as api:
        operator, support = await hire(api, api_keys), await hire(api, api_keys, role="support")
        order = await order_awaiting_deposit(api, api_keys)
        await take(api, operator, order)
        escalation = await api.client.post(
            f"/v1/operator/orders/{order['id']}/escalate",
            json={"comment": "Paid twice?"},
            headers=operator.auth,
        )
        assert escalation.status_code == 201, escalation.text
        resolved = await api.client.post(
            f"/v1/operator/escalations/{escalation.json()['id']}/resolve",
            json={"comment": "Refunded"},
            headers=support.auth,
        )
        assert resolved.status_code == 200, resolved.text
        await set_status(api, operator, order, "completed")
        audit = await api.client.get("/v1/audit", headers=bearer(api_keys.admin))
        assert (await api.client.get("/health/ready")).status_code == 200

    assert [(row["action"], row["actor_role"]) for row in reversed(audit.json()["items"])] == [
        ("operator.created", "admin"),
        ("operator.created", "admin"),
        ("order.taken", "operator"),
        ("order.escalated", "operator"),
        ("order.escalation_resolved", "support"),
        ("order.status_changed", "operator"),
    ]
    database = Database(url=runtime, schema=SCHEMA, var_dir=Path("var"), service_name="order-api")
    try:
        async with database.sessionmaker() as session:
            assert await verify_audit_chain(session) is None
            current_user = await session.scalar(text("SELECT current_user"))
    finally:
        await database.dispose()
    assert current_user == two_role_database.runtime_role


# --- orders nobody took: the notifier's alert orders.untouched ------------------------------------------------


async def untouched_for(db_session: AsyncSession, order: dict[str, Any], age: timedelta) -> datetime:
    """``order`` got its address ``age`` ago, and every other order waiting for a deposit just now (rows other
    tests committed must not count); returns when it got it."""
    now = utcnow()
    others = (Order.id != order["id"]) & (Order.status == "awaiting_deposit")
    await db_session.execute(update(Order).where(others).values(address_assigned_at=now))
    await db_session.execute(
        update(Order).where(Order.id == order["id"]).values(address_assigned_at=now - age)
    )
    return now - age


async def test_an_order_nobody_took_past_the_threshold_is_reported_once_and_cleared_when_taken(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    order = await order_awaiting_deposit(api, api_keys)
    settings = api.settings.model_copy(update={"untouched_order_alert_minutes": 30})
    await untouched_for(db_session, order, timedelta(minutes=29))
    assert await report_untouched_orders(db_session, settings=settings) is None  # within the threshold

    assigned_at = await untouched_for(db_session, order, timedelta(minutes=31))
    assert await report_untouched_orders(db_session, settings=settings) == "orders.untouched"
    assert await report_untouched_orders(db_session, settings=settings) is None  # once per crossing
    [raised] = await outbox_payloads(db_session, "orders.untouched")
    untouched = OrdersUntouched.model_validate(raised)
    assert (untouched.count, untouched.oldest_order_id, untouched.threshold_minutes) == (1, order["id"], 30)
    assert untouched.oldest_address_assigned_at == assigned_at

    await take(api, await hire(api, api_keys), order)
    assert await report_untouched_orders(db_session, settings=settings) == "orders.untouched_cleared"
    assert await report_untouched_orders(db_session, settings=settings) is None
    destinations = await db_session.scalars(
        select(outbox.c.destination).where(outbox.c.aggregate_id == "orders.untouched")
    )
    assert list(destinations) == ["notifier", "notifier"]


async def test_the_untouched_order_alert_can_be_switched_off(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    order = await order_awaiting_deposit(api, api_keys)
    await db_session.execute(
        update(Order).where(Order.id == order["id"]).values(address_assigned_at=utcnow() - timedelta(days=1))
    )
    settings = api.settings.model_copy(update={"untouched_order_alert_minutes": 0})
    assert await report_untouched_orders(db_session, settings=settings) is None
    assert await outbox_payloads(db_session, "orders.untouched") == []


# --- the events it all writes -----------------------------------------------------------------------------


async def test_every_event_order_api_writes_is_exactly_its_contract(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    """One order through its whole life, a sign-in code and an erasure: each event in the outbox reads back
    with its ``desk_contracts`` model (the one its consumer parses it with) to the very payload written, so a
    field the producer adds, drops or retypes outside the contract fails here."""
    holder, support = await hire(api, api_keys), await hire(api, api_keys, role="support")
    email = f"c.{uuid.uuid4().hex[:10]}@example.com"
    order = await order_awaiting_deposit(api, api_keys, email=email)
    await untouched_for(db_session, order, timedelta(minutes=api.settings.untouched_order_alert_minutes + 1))
    assert await report_untouched_orders(db_session, settings=api.settings) == "orders.untouched"
    await take(api, holder, order)
    assert await report_untouched_orders(db_session, settings=api.settings) == "orders.untouched_cleared"
    release = f"/v1/operator/orders/{order['id']}/release"
    assert (await api.client.post(release, json={"comment": "Later"}, headers=holder.auth)).status_code == 200
    await take(api, holder, order)
    await db_session.execute(update(OrderEvent).values(created_at=utcnow() - timedelta(days=1)))
    protection = context_of(api.app).protection
    assert await return_idle_assignments(db_session, settings=api.settings, protection=protection) == 1
    await hire(api, api_keys)  # auto-assigned the order (the holder had it already), and let it lapse
    assert await auto_assign(db_session, settings=api.settings, protection=protection, order_id=order["id"])
    await db_session.execute(update(OrderAssignment).values(lapses_at=utcnow() - timedelta(seconds=1)))
    assert await lapse_untouched_assignments(db_session, settings=api.settings, protection=protection) == 1
    await take(api, holder, order)
    escalate = f"/v1/operator/orders/{order['id']}/escalate"
    escalation = (
        await api.client.post(escalate, json={"comment": "Paid twice?"}, headers=holder.auth)
    ).json()
    thread = f"/v1/operator/escalations/{escalation['id']}"
    await api.client.post(f"{thread}/comments", json={"comment": "Looking"}, headers=support.auth)
    await api.client.post(f"{thread}/resolve", json={"comment": "Refunded"}, headers=support.auth)
    successor = await hire(api, api_keys)
    reassigned = await api.client.post(
        f"/v1/admin/orders/{order['id']}/reassign", json={"operator_id": successor.id}, headers=support.auth
    )
    assert reassigned.status_code == 200, reassigned.text
    await set_status(api, successor, order, "completed")
    code = await api.client.post("/v1/auth/email-code", json={"email": email})
    assert code.status_code == 202, code.text
    customer_id = await db_session.scalar(select(Order.customer_id).where(Order.id == order["id"]))
    erased = await api.client.post(f"/v1/admin/customers/{customer_id}/erase", headers=bearer(api_keys.admin))
    assert erased.status_code == 200, erased.text

    rows = (
        await db_session.execute(select(outbox.c.destination, outbox.c.event_type, outbox.c.payload))
    ).all()
    for destination, event_type, payload in rows:
        assert EVENTS[event_type].model_validate(payload).payload() == payload, event_type
        assert destination in EVENTS[event_type].consumers, event_type
    written = {event_type for _, event_type, _ in rows}
    assert written == {name for name, event in EVENTS.items() if event.producers == ("order-api",)}


# --- workload: the cap, presence, reassignment, deactivation ---------------------------------------------


async def test_a_take_beyond_the_cap_is_refused_naming_it(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(
        session=db_session, wallet_pool=empty_wallet_pool, operator_max_held_orders=2
    ) as api:
        anna = await hire(api, api_keys)
        first, second, third = [await order_awaiting_deposit(api, api_keys) for _ in range(3)]
        await take(api, anna, first)
        await take(api, anna, second)

        refused = await api.client.post(f"/v1/operator/orders/{third['id']}/take", headers=anna.auth)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert (problem["code"], problem["held_orders"], problem["max_held_orders"]) == (
            "operator_at_capacity",
            2,
            2,
        )
        assert "holds 2 orders (the cap is 2)" in problem["detail"]
        assert (await take(api, anna, second))["operator_id"] == anna.id  # one she holds: still fine
        stored = await db_session.get(Order, third["id"])
        assert stored is not None
        assert (stored.status, stored.operator_id) == ("awaiting_deposit", None)

        admin = bearer(api_keys.admin)
        raised = await api.client.patch(
            f"/v1/admin/operators/{anna.id}", json={"max_held_orders": 3}, headers=admin
        )
        assert raised.json()["max_held_orders"] == 3
        assert (await take(api, anna, third))["operator_id"] == anna.id
        reset = await api.client.patch(
            f"/v1/admin/operators/{anna.id}", json={"max_held_orders": None}, headers=admin
        )
        assert reset.json()["max_held_orders"] is None
        presence = (await api.client.get("/v1/operator/presence", headers=anna.auth)).json()
        assert (presence["held_orders"], presence["max_held_orders"]) == (3, 2)
        bad = await api.client.patch(
            f"/v1/admin/operators/{anna.id}", json={"max_held_orders": 0}, headers=admin
        )
        assert bad.status_code == 422
        assert "max_held_orders" in bad.text


async def test_two_takes_at_once_one_below_the_cap_exactly_one_wins(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(
        database_url=own_database_url, wallet_pool=empty_wallet_pool, operator_max_held_orders=2
    ) as api:
        anna = await hire(api, api_keys)
        held = await order_awaiting_deposit(api, api_keys)
        await take(api, anna, held)
        rivals = [await order_awaiting_deposit(api, api_keys) for _ in range(4)]

        responses = await asyncio.gather(
            *(api.client.post(f"/v1/operator/orders/{o['id']}/take", headers=anna.auth) for o in rivals)
        )
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker() as session:
            holding = await session.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.operator_id == anna.id, Order.status == "in_progress")
            )

    assert Counter(r.status_code for r in responses) == {200: 1, 409: 3}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"operator_at_capacity"}
    assert holding == 2


async def test_presence_is_recorded_audited_and_does_not_stop_work_on_held_orders(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna = await hire(api, api_keys)
    order = await order_awaiting_deposit(api, api_keys)
    await take(api, anna, order)
    fresh = (await api.client.get("/v1/operator/presence", headers=anna.auth)).json()
    assert (fresh["status"], fresh["since"], fresh["held_orders"], fresh["max_held_orders"]) == (
        "available",
        None,
        1,
        5,
    )

    away = await api.client.put("/v1/operator/presence", json={"status": "away"}, headers=anna.auth)
    assert away.status_code == 200, away.text
    assert (away.json()["status"], away.json()["since"] is not None) == ("away", True)
    again = await api.client.put("/v1/operator/presence", json={"status": "away"}, headers=anna.auth)
    assert again.json()["since"] == away.json()["since"]
    shown = (await api.client.get(f"/v1/admin/operators/{anna.id}", headers=bearer(api_keys.admin))).json()
    assert (shown["presence"], shown["presence_since"]) == ("away", away.json()["since"])
    assert (await set_status(api, anna, order, "completed"))["status"] == "completed"

    wrong = await api.client.put("/v1/operator/presence", json={"status": "asleep"}, headers=anna.auth)
    assert wrong.status_code == 422
    assert "status" in wrong.text
    by_key = await api.client.put(
        "/v1/operator/presence", json={"status": "away"}, headers=bearer(api_keys.admin)
    )
    assert (by_key.status_code, by_key.json()["code"]) == (403, "operator_forbidden")
    await api.client.put("/v1/operator/presence", json={"status": "available"}, headers=anna.auth)
    changes = await audit_rows(db_session, action="operator.presence_changed", target_id=anna.id)
    assert [(r.actor, r.parameters["presence"]) for r in changes] == [
        (f"operator:{anna.id}", "away"),
        (f"operator:{anna.id}", "available"),
    ]


async def test_support_reassigns_a_held_order_within_the_targets_cap_audited_and_announced(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(
        session=db_session, wallet_pool=empty_wallet_pool, operator_max_held_orders=1
    ) as api:
        anna, boris = await hire(api, api_keys, telegram_user_id=71001), await hire(api, api_keys)
        support, admin = await hire(api, api_keys, role="support"), await hire(api, api_keys, role="admin")
        order = await order_awaiting_deposit(api, api_keys)
        taken = await take(api, anna, order)
        url = f"/v1/admin/orders/{order['id']}/reassign"

        by_operator = await api.client.post(url, json={"operator_id": boris.id}, headers=anna.auth)
        assert (by_operator.status_code, by_operator.json()["code"]) == (403, "operator_forbidden")
        stale = await api.client.post(
            url, json={"operator_id": boris.id}, headers={**support.auth, "If-Match": "1"}
        )
        assert stale.status_code == 412, stale.text
        to_support = await api.client.post(url, json={"operator_id": support.id}, headers=support.auth)
        assert to_support.status_code == 403, to_support.text
        nobody = await api.client.post(url, json={"operator_id": str(uuid.uuid4())}, headers=support.auth)
        assert (nobody.status_code, nobody.json()["code"]) == (404, "operator_not_found")
        await hire(api, api_keys, role="support", telegram_user_id=71002)
        acted_for = await api.client.post(
            url,
            json={"operator_id": boris.id},
            headers={**bearer(api_keys.telegram_gateway), "X-Operator-Telegram-Id": "71002"},
        )
        # the bot reassigns escalated orders only: the gateway's key moves no other order
        assert (acted_for.status_code, acted_for.json()["code"]) == (403, "acted_for_identity_forbidden")

        moved = await api.client.post(
            url,
            json={"operator_id": boris.id, "comment": "Anna is off"},
            headers={**support.auth, "If-Match": str(taken["version"])},
        )
        assert moved.status_code == 200, moved.text
        assert (moved.json()["operator_id"], moved.json()["status"]) == (boris.id, "in_progress")
        assert moved.json()["version"] == taken["version"] + 1
        [event] = await outbox_payloads(db_session, "order.reassigned")
        assert (event["operator_id"], event["operator_name"], event["previous_operator_id"]) == (
            boris.id,
            boris.name,
            anna.id,
        )
        assert (event["previous_operator_name"], event["previous_operator_telegram_user_id"]) == (
            anna.name,
            71001,
        )
        assert (event["actor"], event["actor_role"], event["comment"]) == (
            f"operator:{support.id}",
            "support",
            "Anna is off",
        )
        [audited] = await audit_rows(db_session, action="order.reassigned")
        assert (audited.actor, audited.target_id, audited.parameters["previous_operator_id"]) == (
            f"operator:{support.id}",
            order["id"],
            anna.id,
        )
        assert audited.parameters["operator_id"] == boris.id  # the history says whom (the stats' slices)
        no_longer = await api.client.post(
            f"/v1/operator/orders/{order['id']}/status", json={"status": "completed"}, headers=anna.auth
        )
        assert no_longer.json()["code"] == "order_not_held"

        back = await api.client.post(url, json={"operator_name": anna.name.upper()}, headers=support.auth)
        assert (back.status_code, back.json()["operator_id"]) == (200, anna.id)
        both = await api.client.post(
            url, json={"operator_id": anna.id, "operator_name": anna.name}, headers=support.auth
        )
        assert both.status_code == 422, both.text
        await api.client.patch(
            f"/v1/admin/operators/{admin.id}", json={"name": boris.name}, headers=admin.auth
        )
        ambiguous = await api.client.post(url, json={"operator_name": boris.name}, headers=support.auth)
        assert (ambiguous.status_code, ambiguous.json()["errors"][0]["field"]) == (422, "operator_name")
        other = await order_awaiting_deposit(api, api_keys)
        await take(api, boris, other)
        full = await api.client.post(url, json={"operator_id": boris.id}, headers=support.auth)
        assert (full.status_code, full.json()["code"]) == (409, "operator_at_capacity")
        support_override = await api.client.post(
            url, json={"operator_id": boris.id, "override_cap": True}, headers=support.auth
        )
        assert support_override.status_code == 403, support_override.text
        overridden = await api.client.post(
            url, json={"operator_id": boris.id, "override_cap": True}, headers=admin.auth
        )
        assert overridden.status_code == 200, overridden.text
        await set_status(api, boris, order, "completed")
        closed = await api.client.post(url, json={"operator_id": anna.id}, headers=support.auth)
        assert (closed.status_code, closed.json()["code"]) == (409, "order_transition_not_allowed")
        await api.client.patch(f"/v1/admin/operators/{anna.id}", json={"active": False}, headers=admin.auth)
        inactive = await api.client.post(
            f"/v1/admin/orders/{other['id']}/reassign", json={"operator_id": anna.id}, headers=support.auth
        )
        assert (inactive.status_code, inactive.json()["code"]) == (409, "operator_inactive")


async def test_deactivating_an_operator_returns_their_orders_to_the_pool_as_a_release(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna, boris = await hire(api, api_keys), await hire(api, api_keys)
    orders = [await order_awaiting_deposit(api, api_keys) for _ in range(2)]
    for order in orders:
        await take(api, anna, order)

    deactivated = await api.client.patch(
        f"/v1/admin/operators/{anna.id}", json={"active": False}, headers=bearer(api_keys.admin)
    )
    assert deactivated.status_code == 200, deactivated.text

    for order in orders:
        stored = await db_session.get(Order, order["id"])
        assert stored is not None
        assert (stored.status, stored.operator_id) == ("awaiting_deposit", None)
    released = await outbox_payloads(db_session, "order.released")
    assert sorted(p["order_id"] for p in released) == sorted(o["id"] for o in orders)
    assert {(p["actor"], p["previous_operator_id"]) for p in released} == {("api-key:admin", anna.id)}
    assert "deactivated" in released[0]["comment"]
    assert (await take(api, boris, orders[0]))["operator_id"] == boris.id


async def test_a_take_that_waited_on_a_deactivation_is_refused(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    """A take authenticated just before an admin deactivated the operator finds them inactive once it holds
    the operator's lock: a deactivated operator holds nothing, ever."""
    anna = await hire(api, api_keys)
    order = await order_awaiting_deposit(api, api_keys)
    authenticated_before = OperatorPrincipal(
        operator_id=anna.id, role="operator", channel="rest", name=anna.name, credential="operator-token"
    )
    deactivated = await api.client.patch(
        f"/v1/admin/operators/{anna.id}", json={"active": False}, headers=bearer(api_keys.admin)
    )
    assert deactivated.status_code == 200, deactivated.text
    ctx = context_of(api.app)
    with pytest.raises(OperatorInactiveError):
        await workflow.take_order(
            session=db_session,
            settings=ctx.settings,
            protection=ctx.protection,
            principal=authenticated_before,
            order_id=order["id"],
        )
    stored = await db_session.get(Order, order["id"])
    assert stored is not None
    assert (stored.status, stored.operator_id) == ("awaiting_deposit", None)


# --- the business metrics on /metrics ---------------------------------------------------------------------------


async def test_metrics_time_the_first_take_and_show_the_oldest_untouched_order_until_taken(
    order_api: OrderApiRunner, own_database_url: str, empty_wallet_pool: PeerSettings, api_keys: ApiKeys
) -> None:
    """On a desk of its own (the gauges read committed rows): an order queued at intake gets its address; two
    hours later nobody has taken it, which ``orders_untouched_oldest_seconds`` shows; its first take is timed
    from its address, a second take (after giving it back) is not, and its completion times the handling."""
    async with order_api(database_url=own_database_url, wallet_pool=empty_wallet_pool) as api:

        async def scraped() -> dict[str, float]:
            return metric_samples((await api.client.get("/metrics")).text)

        order = await order_awaiting_deposit(api, api_keys)
        async with service_state(api.app).runtime.database.sessionmaker.begin() as session:
            await session.execute(
                update(Order)
                .where(Order.id == order["id"])
                .values(address_assigned_at=utcnow() - timedelta(hours=2))
            )
        figures = await eventually(
            scraped, until=lambda f: f["orders_untouched"] == 1, within=10.0, message="the order is counted"
        )
        assert 7200 <= figures["orders_untouched_oldest_seconds"] < 7300
        assert figures['orders_created_total{outcome="queued"}'] == 1
        assert figures['orders_created_total{outcome="address_assigned"}'] == 0

        staff = await hire(api, api_keys)
        await take(api, staff, order)
        await set_status(api, staff, order, "awaiting_deposit")  # given back
        await take(api, staff, order)
        await set_status(api, staff, order, "completed")
        figures = await eventually(
            scraped, until=lambda f: f["orders_untouched"] == 0, within=10.0, message="the order is taken"
        )
    assert figures["orders_untouched_oldest_seconds"] == 0
    assert figures["order_take_seconds_count"] == 1  # the first take only
    assert 7200 <= figures["order_take_seconds_sum"] < 7300
    assert figures['order_take_seconds_bucket{le="3600.0"}'] == 0
    assert figures['order_take_seconds_bucket{le="7200.0"}'] == 0
    assert figures['order_take_seconds_bucket{le="+Inf"}'] == 1
    assert figures["order_handling_seconds_count"] == 1
    assert figures["order_handling_seconds_sum"] < 60  # from the second take
    assert figures['orders_closed_total{outcome="completed"}'] == 1
    assert figures['orders_closed_total{outcome="expired"}'] == 0


# --- the transaction record on completion --------------------------------------------------------------

BTC_TX = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
TRON_TX = "8b63c3b7e34f45b4a2d1f3e9d3c1e5a7b9f0e2d4c6a8b0d2e4f6a8c0e2b4d6f8"


async def order_in_progress(api: OrderApi, api_keys: ApiKeys) -> tuple[Staff, dict[str, Any]]:
    """A BTC → USDT (TRC20) order of 0.05 BTC, taken (version 4)."""
    operator = await hire(api, api_keys)
    order = await order_awaiting_deposit(api, api_keys)
    return operator, {**order, **await take(api, operator, order)}


def record(**changes: Any) -> dict[str, Any]:
    """A valid record for a 0.05 BTC → USDT (TRC20) order; ``changes`` replace its parts."""
    return {
        "deposit": {"tx_hash": BTC_TX, "amount": "0.05", "seen_at": "2026-12-06T10:00:00Z"},
        "payout": {"tx_hash": TRON_TX, "amount": "1520.4", "network_fee": "1.2"},
        **changes,
    }


async def test_completing_needs_the_record_unless_the_desk_allows_it(
    order_api: OrderApiRunner, db_session: AsyncSession, api_keys: ApiKeys, empty_wallet_pool: PeerSettings
) -> None:
    async with order_api(session=db_session, wallet_pool=empty_wallet_pool) as api:
        operator, order = await order_in_progress(api, api_keys)
        url = f"/v1/operator/orders/{order['id']}/status"
        refused = await api.client.post(url, json={"status": "completed"}, headers=operator.auth)
        assert (refused.status_code, refused.json()["code"]) == (422, "transaction_required")
        assert [e["field"] for e in refused.json()["errors"]] == ["transaction"]
        assert "record" in refused.json()["title"]
    async with order_api(
        session=db_session, wallet_pool=empty_wallet_pool, completion_transaction_required=False
    ) as api:
        done = await api.client.post(url, json={"status": "completed"}, headers=operator.auth)
        assert (done.status_code, done.json()["status"], done.json()["transaction"]) == (
            200,
            "completed",
            None,
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "cancelled", "transaction": record()}, "transaction"),
        ({"status": "awaiting_deposit", "transaction": record()}, "transaction"),
        ({"status": "completed", "transaction": {"deposit": record()["deposit"]}}, "transaction.payout"),
        ({"status": "completed", "transaction": record(deposit=None)}, "transaction.deposit"),
        (
            {
                "status": "completed",
                "transaction": record(deposit={"tx_hash": "0x" + BTC_TX, "amount": "0.05"}),
            },
            "transaction.deposit.tx_hash",
        ),
        (
            {
                "status": "completed",
                "transaction": record(deposit={"tx_hash": BTC_TX, "amount": "0.050000001"}),
            },
            "transaction.deposit.amount",
        ),
        (
            {"status": "completed", "transaction": record(deposit={"tx_hash": BTC_TX, "amount": "0"})},
            "transaction.deposit.amount",
        ),
        (
            {"status": "completed", "transaction": record(payout={"tx_hash": "T" * 34, "amount": "1"})},
            "transaction.payout.tx_hash",
        ),
        (
            {
                "status": "completed",
                "transaction": record(payout={"tx_hash": TRON_TX, "amount": "1.0000001"}),
            },
            "transaction.payout.amount",
        ),
        (
            {
                "status": "completed",
                "transaction": record(payout={"tx_hash": TRON_TX, "amount": "1", "network_fee": "-1"}),
            },
            "transaction.payout.network_fee",
        ),
        (
            {"status": "completed", "transaction": record(payment_difference="keep")},
            "transaction.payment_difference",
        ),
    ],
)
async def test_each_wrong_part_of_the_record_is_a_422_naming_it_and_changes_nothing(
    api: OrderApi, api_keys: ApiKeys, body: dict[str, Any], field: str
) -> None:
    operator, order = await order_in_progress(api, api_keys)
    refused = await api.client.post(
        f"/v1/operator/orders/{order['id']}/status", json=body, headers=operator.auth
    )
    assert refused.status_code == 422, refused.text
    assert field in [e["field"] for e in refused.json()["errors"]]
    after = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=operator.auth)).json()
    assert (after["status"], after["version"], after["transaction"]) == ("in_progress", 4, None)


async def test_a_deposit_other_than_ordered_is_409_payment_mismatch_and_changes_nothing(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator, order = await order_in_progress(api, api_keys)
    url = f"/v1/operator/orders/{order['id']}/status"
    before = len(await outbox_payloads(db_session, "order.status_changed"))
    for received, difference in (("0.049", "underpaid"), ("0.0500001", "overpaid")):
        body = {"status": "completed", "transaction": record(deposit={"tx_hash": BTC_TX, "amount": received})}
        refused = await api.client.post(url, json=body, headers=operator.auth)
        assert refused.status_code == 409, refused.text
        problem = refused.json()
        assert (problem["code"], problem["ordered"], problem["received"], problem["difference"]) == (
            "payment_mismatch",
            "0.05",
            received,
            difference,
        )
    after = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=operator.auth)).json()
    assert (after["status"], after["version"], after["transaction"]) == ("in_progress", 4, None)
    assert len(await outbox_payloads(db_session, "order.status_changed")) == before
    assert not await audit_rows(db_session, action="order.status_changed", target_id=order["id"])


async def test_an_adjusted_payout_completes_with_its_outcome_in_reads_history_audit_and_event(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator, order = await order_in_progress(api, api_keys)
    body = {
        "status": "completed",
        "comment": "Short by 0.001 BTC; paid out for what arrived.",
        "transaction": record(
            deposit={"tx_hash": BTC_TX.upper(), "amount": "0.049", "seen_at": "2026-12-06T10:00:00Z"},
            payment_difference="adjusted_payout",
        ),
    }
    stale = await api.client.post(
        f"/v1/operator/orders/{order['id']}/status", json=body, headers={**operator.auth, "If-Match": '"3"'}
    )
    assert (stale.status_code, stale.json()["code"]) == (412, "order_version_mismatch")
    done = await api.client.post(
        f"/v1/operator/orders/{order['id']}/status", json=body, headers={**operator.auth, "If-Match": '"4"'}
    )
    assert done.status_code == 200, done.text
    expected = {
        "deposit": {"tx_hash": BTC_TX, "amount": "0.049", "seen_at": "2026-12-06T10:00:00Z"},
        "payout": {"tx_hash": TRON_TX, "amount": "1520.4", "network_fee": "1.2"},
        "payment": "underpaid",
        "difference": "-0.001",
    }
    assert (done.json()["status"], done.json()["version"], done.json()["transaction"]) == (
        "completed",
        5,
        expected,
    )
    detail = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=operator.auth)).json()
    assert detail["transaction"] == expected
    customer = await api.client.get(f"/v1/orders/{order['id']}", headers=bearer(order["session_token"]))
    assert customer.json()["transaction"] == expected

    wire = {
        "deposit_tx_hash": BTC_TX,
        "deposit_amount": "0.049",
        "deposit_seen_at": "2026-12-06T10:00:00+00:00",
        "payout_tx_hash": TRON_TX,
        "payout_amount": "1520.4",
        "payout_network_fee": "1.2",
        "payment": "underpaid",
    }
    step = await db_session.scalar(
        select(OrderEvent).where(OrderEvent.order_id == order["id"], OrderEvent.to_status == "completed")
    )
    assert step is not None
    assert step.details == {"transaction": wire}
    [audited] = await audit_rows(db_session, action="order.status_changed", target_id=order["id"])
    assert audited.parameters["transaction"] == wire
    *_, event = await outbox_payloads(db_session, "order.status_changed")
    assert (event["status"], event["transaction"]) == ("completed", wire)


async def test_a_hold_records_the_deposit_and_the_completion_reuses_it(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator, order = await order_in_progress(api, api_keys)
    deposit = {"tx_hash": BTC_TX, "amount": "0.06", "seen_at": "2026-12-06T10:00:00Z"}
    wrong = await api.client.post(
        f"/v1/operator/orders/{order['id']}/escalate",
        json={"comment": "Paid 0.06", "reason": "overpaid", "deposit": {**deposit, "tx_hash": "abc"}},
        headers=operator.auth,
    )
    assert (wrong.status_code, wrong.json()["errors"][0]["field"]) == (422, "deposit.tx_hash")
    held = await api.client.post(
        f"/v1/operator/orders/{order['id']}/escalate",
        json={"comment": "Paid 0.06 for an order of 0.05", "reason": "overpaid", "deposit": deposit},
        headers=operator.auth,
    )
    assert held.status_code == 201, held.text
    detail = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=operator.auth)).json()
    assert (detail["status"], detail["version"], detail["escalated"]) == ("in_progress", 5, True)
    assert detail["transaction"] == {
        "deposit": deposit,
        "payout": None,
        "payment": None,
        "difference": "0.01",
    }
    step = await db_session.scalar(
        select(OrderEvent).where(OrderEvent.order_id == order["id"]).order_by(OrderEvent.id.desc()).limit(1)
    )
    assert step is not None
    assert (step.details["reason"], step.details["transaction"]["deposit_amount"]) == ("overpaid", "0.06")
    [audited] = await audit_rows(db_session, action="order.escalated", target_id=order["id"])
    assert (audited.parameters["reason"], audited.parameters["transaction"]["deposit_tx_hash"]) == (
        "overpaid",
        BTC_TX,
    )
    [event] = await outbox_payloads(db_session, "order.escalated")
    assert (event["reason"], event["transaction"]["deposit_amount"], event["comment"]) == (
        "overpaid",
        "0.06",
        "Paid 0.06 for an order of 0.05",
    )

    url = f"/v1/operator/orders/{order['id']}/status"
    payout = {"payout": record()["payout"]}
    mismatch = await api.client.post(
        url, json={"status": "completed", "transaction": payout}, headers=operator.auth
    )
    assert (mismatch.status_code, mismatch.json()["received"]) == (409, "0.06")
    adjusted = {**payout, "payment_difference": "adjusted_payout"}
    done = await api.client.post(
        url, json={"status": "completed", "transaction": adjusted}, headers=operator.auth
    )
    assert done.status_code == 200, done.text
    assert done.json()["transaction"]["deposit"] == deposit
    assert (done.json()["transaction"]["payment"], done.json()["transaction"]["difference"]) == (
        "overpaid",
        "0.01",
    )
    support = await hire(api, api_keys, role="support")
    [open_escalation] = (await api.client.get("/v1/operator/escalations", headers=support.auth)).json()[
        "items"
    ]
    await api.client.post(
        f"/v1/operator/escalations/{open_escalation['id']}/resolve",
        json={"comment": "ok"},
        headers=support.auth,
    )
    admin = await hire(api, api_keys, role="admin")
    closed = await api.client.post(
        f"/v1/operator/orders/{order['id']}/escalate",
        json={"comment": "again", "deposit": {**deposit, "amount": "1"}},
        headers=admin.auth,
    )
    assert (closed.status_code, closed.json()["code"]) == (409, "order_transition_not_allowed")
    final = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=admin.auth)).json()
    assert final["transaction"] == done.json()["transaction"]  # a completed order's record is final


async def test_a_plain_escalation_is_reason_other_and_records_nothing(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    operator, order = await order_in_progress(api, api_keys)
    held = await api.client.post(
        f"/v1/operator/orders/{order['id']}/escalate", json={"comment": "Look"}, headers=operator.auth
    )
    assert held.status_code == 201, held.text
    detail = (await api.client.get(f"/v1/operator/orders/{order['id']}", headers=operator.auth)).json()
    assert (detail["version"], detail["transaction"]) == (4, None)
    [event] = await outbox_payloads(db_session, "order.escalated")
    assert (event["reason"], event["transaction"]) == ("other", None)


async def test_the_record_is_exact_on_the_embedded_sqlite(
    order_api: OrderApiRunner, api_keys: ApiKeys, tmp_path: Path
) -> None:
    """The embedded default stores amounts as text: the record and its difference stay exact there too."""
    async with embedded_order_api(order_api, tmp_path / "var") as api:
        operator = await hire(api, api_keys)
        created = (await api.client.post("/v1/orders", json=order_body(amount="0.12345678"))).json()
        engine = service_state(api.app).runtime.database.engine
        async with async_sessionmaker(engine)() as session:  # as if wallet-pool answered and it was taken
            await session.execute(
                update(Order)
                .where(Order.id == created["id"])
                .values(status="in_progress", operator_id=operator.id, version=Order.version + 1)
            )
            await session.commit()
        body = completion_body(
            created, received="0.12345677", sent="0.000001", payment_difference="adjusted_payout"
        )
        done = await api.client.post(
            f"/v1/operator/orders/{created['id']}/status",
            json=body,
            headers=operator.auth,
        )
        assert done.status_code == 200, done.text
        record = done.json()["transaction"]
        assert (record["deposit"]["amount"], record["payout"]["amount"]) == ("0.12345677", "0.000001")
        assert (record["payment"], record["difference"]) == ("underpaid", "-0.00000001")
