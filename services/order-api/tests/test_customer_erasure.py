"""Erasing a customer (``POST /v1/admin/customers/{id}/erase``), committed for real on PostgreSQL and on the
embedded SQLite default: nothing that identifies the customer is left in their rows, their sessions stop
working, their orders stay readable with amounts and statuses, the audit trail and the outbox record the
erasure without personal data, and only an admin in person may do it."""

from __future__ import annotations

import contextlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.models import AuditLog
from order_api.audit.service import verify_audit_chain
from order_api.auth.models import CustomerSession, EmailCode
from order_api.context import context_of
from order_api.customers.models import Customer
from order_api.customers.service import EMAIL_CONTEXT, find_customer_by_email
from order_api.db import outbox
from order_api.operators.models import Operator
from order_api.orders.intake_persistence import PAYOUT_CONTEXT
from order_api.orders.models import IdempotencyKey, Order, OrderEvent
from order_api.protection import DataProtection, SealedDataError
from order_api.testing import ApiKeys, OrderApi, OrderApiRunner, embedded_order_api
from servicekit.state import service_state
from servicekit.testing import migrated_database, runtime_role

PAYOUT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


@pytest.fixture(params=["postgresql", "sqlite"])
async def desk(
    request: pytest.FixtureRequest, order_api: OrderApiRunner, tmp_path: Path
) -> AsyncIterator[OrderApi]:
    """order-api committing for real: on a PostgreSQL database of the test's own, as deployed (connected as
    the runtime role its migrations granted, not the tables' owner), or on SQLite."""
    if request.param == "postgresql":
        async with (
            runtime_role("order_api_rt") as role,
            migrated_database("order-api", prefix="order_api_erasure", runtime_role=role.name) as url,
            order_api(database_url=role.url_for(url)) as running,
        ):
            yield running
        return
    async with embedded_order_api(order_api, tmp_path / "embedded") as running:
        yield running


def session_of(desk: OrderApi) -> AsyncSession:
    session: AsyncSession = service_state(desk.app).runtime.database.sessionmaker()
    return session


async def place_order(desk: OrderApi, email: str, **headers: str) -> dict[str, Any]:
    body = {"email": email, "from_currency": "BTC", "to_currency": "USDT", "to_network": "TRC20"}
    response = await desk.client.post(
        "/v1/orders", json={**body, "amount": "0.05", "payout_address": PAYOUT}, headers=headers
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def cancel(desk: OrderApi, order: dict[str, Any]) -> None:
    response = await desk.client.post(
        f"/v1/orders/{order['id']}/cancel", headers=bearer(order["session_token"])
    )
    assert response.status_code == 200, response.text


async def erase(desk: OrderApi, customer_id: str, token: str, **headers: str) -> Any:
    return await desk.client.post(
        f"/v1/admin/customers/{customer_id}/erase", headers=bearer(token, **headers)
    )


def traces_of(value: Any, *, secrets_: set[str], protection: DataProtection) -> list[str]:
    """What of ``secrets_`` (lower-cased) ``value`` holds: in clear, sealed, or as the email's blind index."""
    found = []
    for text in _strings(value):
        for context in (EMAIL_CONTEXT, PAYOUT_CONTEXT):
            with contextlib.suppress(SealedDataError):
                text = f"{text} {protection.open(text, context=context)}"
        found += [secret for secret in secrets_ if secret in text.lower()]
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            inner = json.loads(value) if value[:1] in "[{" else None
        except ValueError:
            inner = None
        return [value, *_strings(inner)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


DEPOSIT_TX = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
PAYOUT_TX = "8b63c3b7e34f45b4a2d1f3e9d3c1e5a7b9f0e2d4c6a8b0d2e4f6a8c0e2b4d6f8"


async def plant_transaction_hashes(desk: OrderApi, order_id: str) -> None:
    """The order's transaction hashes where a completion leaves them (its columns, the completion event
    not yet delivered) and where an older completion put them (its history step)."""
    hashes = {"deposit_tx_hash": DEPOSIT_TX, "payout_tx_hash": PAYOUT_TX}
    async with session_of(desk) as session, session.begin():
        await session.execute(update(Order).where(Order.id == order_id).values(**hashes))
        step = await session.scalar(
            select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id.desc()).limit(1)
        )
        assert step is not None
        step.details = {**step.details, "transaction": {**hashes, "deposit_amount": "0.05"}}
        pending = (
            await session.execute(
                select(outbox.c.id, outbox.c.payload).where(outbox.c.aggregate_id == order_id)
            )
        ).all()
        for event_id, payload in pending:
            masked = [*payload.get("_redact_after_delivery", []), "transaction"]
            planted = {**payload, "transaction": hashes, "_redact_after_delivery": masked}
            await session.execute(update(outbox).where(outbox.c.id == event_id).values(payload=planted))


async def rows_holding(
    desk: OrderApi, customer_id: str, *, secrets_: set[str], protection: DataProtection
) -> dict[str, list[str]]:
    """Every column of the customer's rows (customer, orders, sessions, email codes, idempotency keys, events
    not yet delivered) that holds one of ``secrets_``, as ``table.column``."""
    async with session_of(desk) as session:
        order_ids = list(await session.scalars(select(Order.id).where(Order.customer_id == customer_id)))
        tables = {
            "customer": (await session.execute(select(Customer.__table__).where(Customer.id == customer_id)))
            .mappings()
            .all(),
            "order": (await session.execute(select(Order.__table__).where(Order.customer_id == customer_id)))
            .mappings()
            .all(),
            "customer_session": (
                await session.execute(
                    select(CustomerSession.__table__).where(CustomerSession.customer_id == customer_id)
                )
            )
            .mappings()
            .all(),
            "email_code": (await session.execute(select(EmailCode.__table__))).mappings().all(),
            "idempotency_key": (await session.execute(select(IdempotencyKey.__table__))).mappings().all(),
            "order_event": (
                await session.execute(select(OrderEvent.__table__).where(OrderEvent.order_id.in_(order_ids)))
            )
            .mappings()
            .all(),
            "outbox": (
                await session.execute(
                    select(outbox).where(
                        outbox.c.delivered_at.is_(None), outbox.c.aggregate_id.in_([customer_id, *order_ids])
                    )
                )
            )
            .mappings()
            .all(),
        }
    return {
        f"{table}.{column}": found
        for table, rows in tables.items()
        for row in rows
        for column, value in row.items()
        if (found := traces_of(value, secrets_=secrets_, protection=protection))
    }


async def test_erasure_leaves_nothing_personal_and_keeps_the_orders(
    desk: OrderApi, api_keys: ApiKeys
) -> None:
    protection: DataProtection = context_of(desk.app).protection
    email = f"Carol.{uuid.uuid4().hex[:8]}@Example.com"
    first = await place_order(desk, email, **{"Idempotency-Key": "k-1"})
    await cancel(desk, first)
    second = await place_order(desk, email)
    async with session_of(desk) as session:
        customer = await find_customer_by_email(session=session, protection=protection, email=email)
    assert customer is not None
    customer_id = customer.id
    assert (await desk.client.post("/v1/auth/email-code", json={"email": email})).status_code == 202
    await plant_transaction_hashes(desk, first["id"])
    marks = {email.lower(), PAYOUT.lower(), protection.email_index(email), DEPOSIT_TX, PAYOUT_TX}
    assert await rows_holding(
        desk, customer_id, secrets_=marks, protection=protection
    )  # the probe finds them

    refused = await erase(desk, customer_id, api_keys.admin)
    assert refused.status_code == 409, refused.text
    assert (refused.json()["code"], refused.json()["open_orders"]) == (
        "customer_has_open_orders",
        [second["id"]],
    )
    await cancel(desk, second)

    erased = await erase(desk, customer_id, api_keys.admin)
    assert erased.status_code == 200, erased.text
    assert erased.json()["customer_id"] == customer_id
    again = await erase(desk, customer_id, api_keys.admin)
    assert (again.status_code, again.json()) == (200, erased.json())

    assert await rows_holding(desk, customer_id, secrets_=marks, protection=protection) == {}
    async with session_of(desk) as session:
        assert await find_customer_by_email(session=session, protection=protection, email=email) is None
        audit = (
            (await session.execute(select(AuditLog).where(AuditLog.action == "customer.erased")))
            .scalars()
            .all()
        )
        events = (
            (await session.execute(select(outbox).where(outbox.c.event_type == "customer.erased")))
            .mappings()
            .all()
        )
        assert await verify_audit_chain(session) is None
    for token in (first["session_token"], second["session_token"]):
        response = await desk.client.get(f"/v1/orders/{second['id']}", headers=bearer(token))
        assert response.status_code == 401, response.text

    for order in (first, second):
        read = await desk.client.get(f"/v1/operator/orders/{order['id']}", headers=bearer(api_keys.admin))
        assert read.status_code == 200, read.text
        kept = read.json()
        assert (kept["amount"], kept["from_currency"], kept["status"], kept["payout_address"]) == (
            "0.05",
            "BTC",
            "cancelled",
            None,
        )

    [row] = audit
    assert (row.actor, row.target_type, row.target_id, row.parameters) == (
        "api-key:admin",
        "customer",
        customer_id,
        {"orders": 2},
    )
    assert traces_of(json.dumps(row.parameters), secrets_=marks, protection=protection) == []
    [event] = events
    assert (event["destination"], event["aggregate_id"], event["delivered_at"]) == (
        "notifier",
        customer_id,
        None,
    )
    assert event["payload"] == {"customer_id": customer_id, "erased_at": event["payload"]["erased_at"]}
    erased_at = datetime.fromisoformat(event["payload"]["erased_at"])
    assert erased_at.utcoffset() == timedelta(0)  # UTC
    assert erased_at == datetime.fromisoformat(erased.json()["erased_at"].replace("Z", "+00:00"))

    newcomer = await place_order(desk, email, **{"Idempotency-Key": "k-1"})  # the key's answer is gone too
    assert newcomer["id"] != first["id"]
    async with session_of(desk) as session:
        fresh = await find_customer_by_email(session=session, protection=protection, email=email)
    assert fresh is not None
    assert (fresh.id != customer_id, fresh.erased_at) == (True, None)


async def test_only_an_admin_in_person_may_erase(desk: OrderApi, api_keys: ApiKeys) -> None:
    order = await place_order(desk, f"dave.{uuid.uuid4().hex[:8]}@example.com")
    await cancel(desk, order)
    async with session_of(desk) as session:
        customer_id = (await session.scalars(select(Order.customer_id).where(Order.id == order["id"]))).one()

    staff: dict[str, dict[str, Any]] = {}
    for role in ("operator", "support", "admin"):
        hired = await desk.client.post(
            "/v1/admin/operators",
            json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role},
            headers=bearer(api_keys.admin),
        )
        assert hired.status_code == 201, hired.text
        staff[role] = hired.json()
    telegram_user_id = 10**9 + secrets.randbelow(10**9)
    async with session_of(desk) as session, session.begin():
        await session.execute(
            update(Operator)
            .where(Operator.id == staff["admin"]["id"])
            .values(telegram_user_id=telegram_user_id)
        )

    for role in ("operator", "support"):
        response = await erase(desk, customer_id, staff[role]["token"])
        assert (response.status_code, response.json()["code"]) == (403, "operator_forbidden"), role
    acted_for = await erase(
        desk, customer_id, api_keys.telegram_gateway, **{"X-Operator-Telegram-Id": str(telegram_user_id)}
    )
    assert acted_for.status_code == 403, acted_for.text
    assert (await erase(desk, customer_id, api_keys.wallet_pool)).status_code == 403
    assert (await desk.client.post(f"/v1/admin/customers/{customer_id}/erase")).status_code == 401
    async with session_of(desk) as session:
        assert (await session.get(Customer, customer_id)).erased_at is None  # type: ignore[union-attr]

    missing = await erase(desk, str(uuid.uuid4()), staff["admin"]["token"])
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["code"] == "customer_not_found"
    done = await erase(desk, customer_id, staff["admin"]["token"])  # an admin's own token
    assert done.status_code == 200, done.text
    async with session_of(desk) as session:
        [row] = (
            (await session.execute(select(AuditLog).where(AuditLog.action == "customer.erased")))
            .scalars()
            .all()
        )
    assert row.actor == f"operator:{staff['admin']['id']}"
