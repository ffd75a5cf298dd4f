"""Emailed one-time codes: ``POST /v1/auth/email-code`` then ``POST /v1/auth/verify`` for a full session."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.models import EmailCode
from order_api.context import context_of
from order_api.customers.models import Customer
from order_api.customers.service import find_or_create_customer
from order_api.db import outbox
from order_api.protection import DataProtection
from order_api.testing import CustomerFactory, OrderApi, OrderApiRunner, StandInReceiver
from servicekit.apikeys import mint_key
from servicekit.db import resolve_database_url, utcnow
from servicekit.migrations import upgrade
from servicekit.sealing import open_sealed_payload
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import TEST_EVENT_KEYRING, eventually, service_dir

if TYPE_CHECKING:
    import httpx


EVENT = "customer.email_code_requested"


def opened_payload(payload: dict[str, Any], *, event_type: str, aggregate_id: str | None) -> dict[str, Any]:
    """An event payload as the notifier reads it: its sealed personal data opened."""
    return open_sealed_payload(TEST_EVENT_KEYRING, payload, event_type=event_type, aggregate_id=aggregate_id)


async def _code_events(session: AsyncSession, customer_id: str | None = None) -> list[dict[str, Any]]:
    """The code events in the outbox, their sealed fields opened as the notifier opens them."""
    query = select(outbox.c.payload, outbox.c.delivered_at, outbox.c.aggregate_id).where(
        outbox.c.event_type == EVENT
    )
    if customer_id is not None:
        query = query.where(outbox.c.aggregate_id == customer_id)
    rows = (await session.execute(query.order_by(outbox.c.created_at))).all()
    return [
        {
            **(
                row.payload
                if row.delivered_at
                else opened_payload(row.payload, event_type=EVENT, aggregate_id=row.aggregate_id)
            ),
            "delivered": row.delivered_at is not None,
        }
        for row in rows
    ]


async def _email_codes(session: AsyncSession, protection: DataProtection, email: str) -> list[EmailCode]:
    index = protection.email_index(email)
    query = select(EmailCode).where(EmailCode.email_index == index).order_by(EmailCode.created_at)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


async def test_the_code_travels_only_through_the_outbox_and_verifies_into_a_full_session(
    order_api: OrderApiRunner, own_database_url: str, notifier_stand_in: StandInReceiver, unique_email: str
) -> None:
    """End to end, committed for real: order-api's outbox relay delivers to a stand-in notifier."""
    notifier_key = mint_key("oa")
    async with order_api(
        database_url=own_database_url,
        notifier=PeerSettings(url=notifier_stand_in.url, api_key=SecretStr(notifier_key)),
        outbox_poll_seconds=0.1,
    ) as running:
        sessions = service_state(running.app).runtime.database.sessionmaker
        protection: DataProtection = context_of(running.app).protection
        async with sessions.begin() as session:
            customer = await find_or_create_customer(
                session=session, protection=protection, email=unique_email, locale="ru"
            )

        requested = await running.client.post(
            "/v1/auth/email-code", json={"email": unique_email.upper(), "locale": "en"}
        )
        assert requested.status_code == 202, requested.text
        assert requested.json() == {"status": "sent", "expires_in_seconds": 600}

        async def delivered() -> list[dict[str, Any]]:
            return notifier_stand_in.of_type(EVENT)

        [envelope] = await eventually(delivered, message="notifier receives the code")
        payload = envelope["payload"]
        assert envelope["source"] == "order-api"
        assert envelope["aggregate_id"] == customer.id
        assert notifier_stand_in.authorizations == [f"Bearer {notifier_key}"]
        # The address and the code travel sealed: nothing of them in clear on the wire or in the outbox.
        assert set(payload) == {"customer_id", "locale", "expires_at", "sealed", "_redact_after_delivery"}
        assert payload["_redact_after_delivery"] == ["sealed"]
        assert unique_email.lower() not in str(payload).lower()
        opened = opened_payload(payload, event_type=EVENT, aggregate_id=customer.id)
        assert opened["customer_id"] == customer.id
        assert opened["email"] == unique_email  # the address on file, not the variant typed
        assert opened["locale"] == "en"
        assert re.fullmatch(r"\d{6}", opened["code"])
        code: str = opened["code"]
        assert code not in str(payload)

        async def stored_events() -> list[dict[str, Any]]:
            async with sessions() as session:
                return await _code_events(session, customer.id)

        [stored] = await eventually(
            stored_events, until=lambda events: bool(events) and all(e["delivered"] for e in events)
        )
        assert stored["sealed"] == "***"
        assert "email" not in stored
        assert "code" not in stored
        assert stored["customer_id"] == customer.id
        async with sessions() as session:
            [row] = await _email_codes(session, protection, unique_email)
            columns = (await session.execute(select(EmailCode.__table__).where(EmailCode.id == row.id))).one()
        assert not any(code in str(value) for value in columns._mapping.values())
        assert row.consumed_at is None

        verified = await running.client.post(
            "/v1/auth/verify", json={"email": unique_email, "code": f" {code[:3]} {code[3:]}\n"}
        )
        assert verified.status_code == 200, verified.text
        body = verified.json()
        assert body["kind"] == "full"
        assert body["customer_id"] == customer.id
        assert body["session_token"].startswith("cs_")
        assert set(body) == {"session_token", "kind", "expires_at", "customer_id"}

        headers = {"Authorization": f"Bearer {body['session_token']}"}
        me = await running.client.get("/v1/auth/session", headers=headers)
        assert me.json() | {"expires_at": None} == {
            "customer_id": customer.id,
            "kind": "full",
            "order_id": None,
            "expires_at": None,
        }

        again = await running.client.post("/v1/auth/verify", json={"email": unique_email, "code": code})
        assert again.status_code == 422
        assert again.json()["code"] == "email_code_invalid"


async def test_an_unknown_email_gets_the_same_answer_and_no_code(
    api: OrderApi, db_session: AsyncSession, protection: DataProtection, unique_email: str
) -> None:
    events_before = await _code_events(db_session)
    response = await api.client.post("/v1/auth/email-code", json={"email": unique_email})
    assert response.status_code == 202
    assert response.json() == {"status": "sent", "expires_in_seconds": 600}
    assert await _email_codes(db_session, protection, unique_email) == []
    assert await _code_events(db_session) == events_before
    verify = await api.client.post("/v1/auth/verify", json={"email": unique_email, "code": "123456"})
    assert verify.status_code == 422
    assert verify.json()["code"] == "email_code_invalid"


async def _request_code(
    client: httpx.AsyncClient, session: AsyncSession, customer: Customer, email: str
) -> str:
    response = await client.post("/v1/auth/email-code", json={"email": email})
    assert response.status_code == 202, response.text
    events = await _code_events(session, customer.id)
    code: str = events[-1]["code"]
    return code


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@dataclass
class Mailbox:
    """A known customer's email: ask for a sign-in code (answers the code sent) and read the codes stored."""

    api: OrderApi
    session: AsyncSession
    protection: DataProtection
    customer: Customer
    email: str

    async def request_code(self) -> str:
        return await _request_code(self.api.client, self.session, self.customer, self.email)

    async def stored_codes(self) -> list[EmailCode]:
        return await _email_codes(self.session, self.protection, self.email)


@pytest.fixture
async def mailbox(
    api: OrderApi,
    db_session: AsyncSession,
    protection: DataProtection,
    make_customer: CustomerFactory,
    unique_email: str,
) -> Mailbox:
    customer = await make_customer(unique_email)
    return Mailbox(api=api, session=db_session, protection=protection, customer=customer, email=unique_email)


async def test_wrong_codes_are_counted_and_exhaust_the_code(
    api: OrderApi, mailbox: Mailbox, unique_email: str
) -> None:
    code = await mailbox.request_code()
    maximum = api.settings.email_code_max_attempts
    for attempt in range(1, maximum + 1):
        wrong = await api.client.post("/v1/auth/verify", json={"email": unique_email, "code": _wrong(code)})
        assert wrong.status_code == 422
        problem = wrong.json()
        assert problem["code"] == "email_code_invalid"
        assert [e["field"] for e in problem["errors"]] == ["code"]
        [row] = await mailbox.stored_codes()
        assert row.attempts == attempt  # the count survives the error response
    assert row.consumed_at is not None
    right = await api.client.post("/v1/auth/verify", json={"email": unique_email, "code": code})
    assert right.status_code == 422
    assert right.json()["code"] == "email_code_invalid"


async def test_an_expired_code_and_a_superseded_code_are_refused(
    api: OrderApi, db_session: AsyncSession, mailbox: Mailbox, unique_email: str
) -> None:
    first = await mailbox.request_code()
    second = await mailbox.request_code()
    superseded = await api.client.post("/v1/auth/verify", json={"email": unique_email, "code": first})
    if first != second:
        assert superseded.status_code == 422
    old, new = await mailbox.stored_codes()
    assert old.consumed_at is not None
    assert new.consumed_at is None

    await db_session.execute(
        update(EmailCode).where(EmailCode.id == new.id).values(expires_at=utcnow() - timedelta(seconds=1))
    )
    expired = await api.client.post("/v1/auth/verify", json={"email": unique_email, "code": second})
    assert expired.status_code == 422
    assert expired.json()["code"] == "email_code_invalid"


async def test_bad_input_is_a_validation_problem_naming_the_field(api: OrderApi) -> None:
    for path, body, field in (
        ("/v1/auth/email-code", {"email": "not-an-email"}, "email"),
        ("/v1/auth/email-code", {"email": "a@example.com", "locale": "xx-!!"}, "locale"),
        ("/v1/auth/verify", {"email": "a@example.com"}, "code"),
        ("/v1/auth/verify", {"email": "a@example.com", "code": "1" * 40}, "code"),
    ):
        response = await api.client.post(path, json=body)
        assert response.status_code == 422, body
        problem = response.json()
        assert problem["code"] == "validation_failed"
        assert [e["field"] for e in problem["errors"]] == [field]


@pytest.fixture(params=["memory", "redis"])
def rate_limit_redis_url(request: pytest.FixtureRequest) -> str | None:
    """Rate limits kept in process memory, or in Redis as across replicas."""
    if request.param == "memory":
        return None
    url: str = request.getfixturevalue("redis_url")
    return url


async def test_code_requests_are_limited_per_email_even_for_unknown_emails(
    order_api: OrderApiRunner,
    db_session: AsyncSession,
    make_customer: CustomerFactory,
    unique_email: str,
    rate_limit_redis_url: str | None,
) -> None:
    await make_customer(unique_email)
    async with order_api(
        session=db_session, redis_url=rate_limit_redis_url, email_code_rate_limit="2/minute"
    ) as running:
        for email in (unique_email, f"nobody.{unique_email}"):
            for _ in range(2):
                ok = await running.client.post("/v1/auth/email-code", json={"email": email})
                assert ok.status_code == 202
            # Another spelling of the same mailbox counts against the same limit.
            limited = await running.client.post("/v1/auth/email-code", json={"email": email.upper()})
            assert limited.status_code == 429
            assert limited.headers["content-type"] == "application/problem+json"
            assert limited.json()["code"] == "rate_limited"
            retry_after = int(limited.headers["Retry-After"])
            assert 1 <= retry_after <= 60
            assert limited.json()["retry_after_seconds"] == retry_after


async def test_auth_requests_are_limited_per_client_network(
    order_api: OrderApiRunner, db_session: AsyncSession, rate_limit_redis_url: str | None
) -> None:
    async with order_api(
        session=db_session,
        redis_url=rate_limit_redis_url,
        auth_rate_limit="3/minute",
        trusted_proxies=["127.0.0.1/32"],
    ) as running:
        client = running.client
        for i in range(2):
            assert (
                await client.post("/v1/auth/email-code", json={"email": f"ip{i}@example.com"})
            ).status_code == 202
        verify = await client.post("/v1/auth/verify", json={"email": "ip0@example.com", "code": "000000"})
        assert verify.status_code == 422
        limited = await client.post("/v1/auth/verify", json={"email": "ip0@example.com", "code": "000000"})
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        limited = await client.post("/v1/auth/email-code", json={"email": "ip9@example.com"})
        assert limited.status_code == 429
        # Behind a trusted proxy, each forwarded client has its own budget.
        forwarded = {"X-Forwarded-For": "203.0.113.7"}
        other = await client.post("/v1/auth/email-code", json={"email": "ip9@example.com"}, headers=forwarded)
        assert other.status_code == 202
        # An IPv6 client is its /64: its addresses share one budget, and the next /64 is another client.
        one_64 = [
            (
                await client.post(
                    "/v1/auth/email-code",
                    json={"email": f"v6-{n}@example.com"},
                    headers={"X-Forwarded-For": f"2001:db8:1:2::{n:x}"},
                )
            ).status_code
            for n in range(1, 5)
        ]
        assert one_64 == [202, 202, 202, 429]
        next_64 = await client.post(
            "/v1/auth/email-code",
            json={"email": "v6@example.com"},
            headers={"X-Forwarded-For": "2001:db8:1:3::1"},
        )
        assert next_64.status_code == 202


async def test_the_flow_works_the_same_on_the_embedded_sqlite_database(
    order_api: OrderApiRunner, tmp_path: Path, unique_email: str
) -> None:
    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="order-api")
    await asyncio.to_thread(upgrade, service_dir("order-api"), url=url)
    async with order_api(database_url=None, var_dir=var_dir) as running:
        assert service_state(running.app).runtime.database.engine.dialect.name == "sqlite"
        sessions = service_state(running.app).runtime.database.sessionmaker
        protection: DataProtection = context_of(running.app).protection
        async with sessions.begin() as session:
            customer = await find_or_create_customer(
                session=session, protection=protection, email=unique_email, locale="en"
            )
            again = await find_or_create_customer(
                session=session, protection=protection, email=unique_email.upper(), locale="en"
            )
        assert again.id == customer.id

        assert (
            await running.client.post("/v1/auth/email-code", json={"email": unique_email})
        ).status_code == 202
        async with sessions() as session:
            [event] = await _code_events(session, customer.id)
        code: str = event["code"]
        wrong = await running.client.post(
            "/v1/auth/verify", json={"email": unique_email, "code": _wrong(code)}
        )
        assert wrong.json()["code"] == "email_code_invalid"
        right = await running.client.post("/v1/auth/verify", json={"email": unique_email, "code": code})
        assert right.status_code == 200, right.text
        async with sessions() as session:
            [row] = await _email_codes(session, protection, unique_email)
        assert row.attempts == 2
        assert row.consumed_at is not None
        me = await running.client.get(
            "/v1/auth/session", headers={"Authorization": f"Bearer {right.json()['session_token']}"}
        )
        assert me.json()["kind"] == "full"
