"""Email delivery as customers and on-call see it, across order-api, wallet-pool and notifier as processes and a
real SMTP server on loopback: the one-time code email works, an SMTP outage delays mail without losing it, a
refused recipient is not retried, and a redelivered event sends one email."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_emailing
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def notifications(notifier: ServiceProcess, stack: Stack, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        response = await client.get(
            "/v1/notifications",
            params=params,
            headers={"Authorization": f"Bearer {stack.keys.notifier_admin}"},
        )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_the_one_time_code_email_signs_the_customer_in(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool, order_api, _ = await start_emailing(stack, services, smtp_port=smtp_server.port)
    await import_btc_wallets(wallet_pool, stack, 1)
    body = order_body(customer_email(41))
    email = body["email"]

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        order = (await client.post("/v1/orders", json=body)).json()  # the customer exists from now on
        await mail_to(smtp_server, email, 1)  # the order's email
        requested = await client.post("/v1/auth/email-code", json={"email": email, "locale": "en"})
        assert requested.status_code == 202, requested.text
        [message] = [m for m in await mail_to(smtp_server, email, 2) if "code" in str(m["Subject"]).lower()]
        found = re.search(r"\b(\d{6})\b", text_of(message))
        assert found is not None, text_of(message)

        wrong = "000000" if found.group(1) != "000000" else "111111"
        refused = await client.post("/v1/auth/verify", json={"email": email, "code": wrong})
        assert refused.status_code == 422, refused.text

        verified = await client.post("/v1/auth/verify", json={"email": email, "code": found.group(1)})
        assert verified.status_code in (200, 201), verified.text
        session = verified.json()
        assert session["kind"] == "full"
        mine = await client.get("/v1/orders", headers={"Authorization": f"Bearer {session['session_token']}"})
        assert mine.status_code == 200, mine.text
        assert [item["id"] for item in mine.json()["items"]] == [order["id"]]
    assert found.group(1) not in (stack.logs / "notifier.log").read_text()  # the code is never logged


async def test_mail_waits_out_an_smtp_outage_and_a_refused_recipient_is_not_retried(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    # Enough attempts to outlast the outage: with the stack's short backoff, 8 would be spent in seconds.
    wallet_pool, order_api, notifier = await start_emailing(
        stack, services, smtp_port=smtp_server.port, NOTIFIER_DELIVERY_MAX_ATTEMPTS="1000"
    )
    [address] = await import_btc_wallets(wallet_pool, stack, 1)
    refused_body = order_body(customer_email(31))
    smtp_server.refused.add(refused_body["email"])
    smtp_server.stop()

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        waiting_body = order_body(customer_email(32), amount="0.0421")
        waiting = (await client.post("/v1/orders", json=waiting_body)).json()

    # While the SMTP server is down the order's email is pending, retried with backoff, its error recorded.
    retried = await eventually(
        lambda: notifications(notifier, stack, order_id=waiting["id"], channel="email"),
        until=lambda found: len(found) == 1 and found[0]["attempts"] >= 2,
        within=20,
        message="the email retried while SMTP is down",
    )
    assert retried[0]["status"] == "pending"
    assert retried[0]["last_error"]
    assert smtp_server.messages == []

    smtp_server.start()
    [delivered] = await mail_to(smtp_server, waiting_body["email"], 1)
    assert "0.0421" in text_of(delivered)
    assert address in text_of(delivered)
    sent = await notifications(notifier, stack, order_id=waiting["id"], channel="email")
    assert [(n["status"], n["attempts"] >= 3) for n in sent] == [("sent", True)]

    # A recipient the server refuses (550): a permanent failure after one attempt, never tried again (the
    # queue delivers a later email meanwhile, so the worker has had its chances to retry it).
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        refused = (await client.post("/v1/orders", json=refused_body)).json()
        later_body = order_body(customer_email(33))
        await client.post("/v1/orders", json=later_body)
    await mail_to(smtp_server, later_body["email"], 1)
    failed = await eventually(
        lambda: notifications(notifier, stack, order_id=refused["id"], channel="email"),
        until=lambda found: len(found) == 1 and found[0]["status"] == "failed",
        within=20,
    )
    assert failed[0]["attempts"] == 1
    assert "550" in failed[0]["last_error"]
    assert refused_body["email"] not in smtp_server.recipients()


async def test_an_event_delivered_twice_sends_one_email(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    notifier = stack.notifier(smtp_port=smtp_server.port, NOTIFIER_TELEGRAM_ENABLED="false")
    services.append(notifier)
    await notifier.start()
    envelope = {
        "id": str(uuid.uuid4()),
        "type": "customer.email_code_requested",
        "source": "order-api",
        "occurred_at": datetime.now(UTC).isoformat(),
        "aggregate_id": None,
        "payload": {
            "customer_id": str(uuid.uuid4()),
            "email": "twice@example.com",
            "code": "482913",
            "locale": "en",
            "expires_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        },
    }
    async with httpx.AsyncClient(
        base_url=notifier.url, headers={"Authorization": f"Bearer {stack.keys.order_api_to_notifier}"}
    ) as client:
        first = await client.post("/v1/events", json=envelope)
        second = await client.post("/v1/events", json=envelope)
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert (first.json()["status"], second.json()["status"]) == ("processed", "duplicate")

    await mail_to(smtp_server, "twice@example.com", 1)
    queued = await notifications(notifier, stack)
    assert [(n["template"], n["status"]) for n in queued] == [("email_code", "sent")]
    assert smtp_server.recipients().count("twice@example.com") == 1
