"""Customer sessions: random tokens stored only as hashes; order-scoped or full; expiring and revocable."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.dependencies import OptionalCustomer
from order_api.auth.errors import SessionInvalidError
from order_api.auth.models import CustomerSession
from order_api.auth.service import (
    CustomerPrincipal,
    authenticate_customer,
    open_full_session,
    open_order_session,
    revoke_session,
)
from order_api.testing import CustomerFactory, OrderApi, SettingsFactory
from servicekit.db import utcnow


async def test_an_order_session_reaches_its_own_order_only(
    db_session: AsyncSession, make_settings: SettingsFactory, make_customer: CustomerFactory
) -> None:
    settings = make_settings()
    customer = await make_customer()
    order_id = str(uuid.uuid4())
    before = utcnow()
    issued = await open_order_session(
        session=db_session, settings=settings, customer_id=customer.id, order_id=order_id
    )
    assert issued.kind == "order"
    assert issued.token.startswith("cs_")
    assert len(issued.token) == len("cs_") + 43
    assert before + timedelta(days=settings.order_session_days) <= issued.expires_at
    assert issued.expires_at <= utcnow() + timedelta(days=settings.order_session_days)

    principal = await authenticate_customer(session=db_session, token=issued.token)
    assert principal == CustomerPrincipal(
        customer_id=customer.id, session_id=issued.session_id, kind="order", order_id=order_id
    )
    assert principal.may_access(order_id)
    assert not principal.may_access(str(uuid.uuid4()))


async def test_a_full_session_reaches_every_order(
    db_session: AsyncSession, make_settings: SettingsFactory, make_customer: CustomerFactory
) -> None:
    settings = make_settings(full_session_hours=2)
    customer = await make_customer()
    issued = await open_full_session(session=db_session, settings=settings, customer_id=customer.id)
    assert issued.kind == "full"
    assert issued.expires_at - utcnow() <= timedelta(hours=2)
    principal = await authenticate_customer(session=db_session, token=issued.token)
    assert principal.kind == "full"
    assert principal.order_id is None
    assert principal.may_access(str(uuid.uuid4()))


async def test_the_token_is_stored_only_as_its_hash(
    db_session: AsyncSession, make_settings: SettingsFactory, make_customer: CustomerFactory
) -> None:
    customer = await make_customer()
    issued = await open_full_session(session=db_session, settings=make_settings(), customer_id=customer.id)
    row = (
        await db_session.execute(
            select(CustomerSession.__table__).where(CustomerSession.id == issued.session_id)
        )
    ).one()
    assert row.token_hash == hashlib.sha256(issued.token.encode()).hexdigest()
    assert not any(issued.token[3:] in str(value) for value in row._mapping.values())


@pytest.mark.parametrize("case", ["expired", "revoked", "unknown", "not_a_session_token", "empty"])
async def test_expired_revoked_and_unknown_tokens_are_refused(
    db_session: AsyncSession, make_settings: SettingsFactory, make_customer: CustomerFactory, case: str
) -> None:
    customer = await make_customer()
    issued = await open_order_session(
        session=db_session, settings=make_settings(), customer_id=customer.id, order_id=str(uuid.uuid4())
    )
    token = issued.token
    if case == "expired":
        await db_session.execute(
            update(CustomerSession)
            .where(CustomerSession.id == issued.session_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    elif case == "revoked":
        await revoke_session(session=db_session, session_id=issued.session_id)
    elif case == "unknown":
        token = "cs_" + "A" * 43
    elif case == "not_a_session_token":
        token = "adm_" + token[3:]
    else:
        token = ""
    with pytest.raises(SessionInvalidError) as raised:
        await authenticate_customer(session=db_session, token=token)
    assert raised.value.code == "session_invalid"
    assert raised.value.status == 401


async def test_who_am_i_and_logout_over_http(
    api: OrderApi, db_session: AsyncSession, make_customer: CustomerFactory
) -> None:
    customer = await make_customer()
    order_id = str(uuid.uuid4())
    issued = await open_order_session(
        session=db_session, settings=api.settings, customer_id=customer.id, order_id=order_id
    )
    headers = {"Authorization": f"Bearer {issued.token}"}

    me = await api.client.get("/v1/auth/session", headers=headers)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["customer_id"] == customer.id
    assert body["kind"] == "order"
    assert body["order_id"] == order_id
    assert body["expires_at"].startswith(issued.expires_at.isoformat()[:19])
    assert "session_token" not in body

    logout = await api.client.post("/v1/auth/logout", headers=headers)
    assert logout.status_code == 204
    assert logout.content == b""
    after = await api.client.get("/v1/auth/session", headers=headers)
    assert after.status_code == 401
    assert after.json()["code"] == "session_invalid"


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "session_missing"),
        ("Bearer cs_" + "x" * 43, "session_invalid"),
        ("Bearer not-a-token", "session_invalid"),
        ("Basic YWxpY2U6c2VjcmV0", "session_invalid"),
    ],
)
async def test_customer_routes_refuse_requests_without_a_valid_session(
    api: OrderApi, authorization: str | None, code: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/v1/auth/session"), ("POST", "/v1/auth/logout")):
        response = await api.client.request(method, path, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["code"] == code


async def test_an_optional_customer_is_none_without_authorization_and_refused_with_a_bad_one(
    api: OrderApi, db_session: AsyncSession, make_customer: CustomerFactory
) -> None:
    async def probe(customer: OptionalCustomer) -> dict[str, str | None]:
        return {"customer_id": customer.customer_id if customer else None}

    app: FastAPI = api.app
    app.add_api_route("/test/optional-customer", probe, methods=["GET"])
    customer = await make_customer()
    issued = await open_full_session(session=db_session, settings=api.settings, customer_id=customer.id)

    anonymous = await api.client.get("/test/optional-customer")
    assert anonymous.json() == {"customer_id": None}
    known = await api.client.get(
        "/test/optional-customer", headers={"Authorization": f"Bearer {issued.token}"}
    )
    assert known.json() == {"customer_id": customer.id}
    bad = await api.client.get("/test/optional-customer", headers={"Authorization": "Bearer cs_nope"})
    assert bad.status_code == 401
    assert bad.json()["code"] == "session_invalid"
