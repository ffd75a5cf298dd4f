"""wallet-pool frozen (SIGSTOP) while a customer orders: order-api still answers within the intake budget,
truthfully (``awaiting_address``), and once wallet-pool is back the customer's mailbox holds one email per
fact: the order (its address to follow), then its address. The services run as processes; mail goes to a
real SMTP server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database

ANSWER_WITHIN_SECONDS = 3.0


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def test_an_order_placed_while_wallet_pool_is_frozen_gets_one_email_per_fact(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool = stack.wallet_pool()
    order_api = stack.order_api()  # the default intake budget
    notifier = stack.notifier(smtp_port=smtp_server.port, NOTIFIER_TELEGRAM_ENABLED="false")
    services.extend([wallet_pool, order_api, notifier])
    for service in (wallet_pool, notifier, order_api):
        await service.start()
    [address] = await import_btc_wallets(wallet_pool, stack, 1)
    assert wallet_pool.process is not None
    body = order_body(customer_email(41), amount="0.0415")

    async with httpx.AsyncClient(base_url=order_api.url, timeout=30) as client:
        os.kill(wallet_pool.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = await client.post("/v1/orders", json=body)
            answered_in = time.monotonic() - started
        finally:
            os.kill(wallet_pool.process.pid, signal.SIGCONT)
        assert response.status_code == 201, response.text
        assert answered_in < ANSWER_WITHIN_SECONDS
        order = response.json()
        assert (order["status"], order["deposit_address"], order["queue_position"]) == (
            "awaiting_address",
            None,
            None,
        )

        auth = {"Authorization": f"Bearer {order['session_token']}"}

        async def current() -> dict[str, object]:
            read: dict[str, object] = (await client.get(f"/v1/orders/{order['id']}", headers=auth)).json()
            return read

        settled = await eventually(
            current,
            until=lambda o: o["status"] == "awaiting_deposit",
            within=30.0,
            message="the reconciler gets the order its address once wallet-pool is back",
        )
        assert settled["deposit_address"] == address

    mails = await mail_to(smtp_server, body["email"], 2)
    created, ready = sorted(mails, key=lambda m: "ready" in str(m["Subject"]))
    assert "has been created" in str(created["Subject"])
    assert "deposit address is ready" in str(ready["Subject"])
    created_text = text_of(created)
    assert "0.0415" in created_text
    for untrue in ("None", "in the queue", address):
        assert untrue not in created_text, created_text
    assert address in text_of(ready)
    # Nothing else is on its way: the notifier has exactly these two for the order.
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        listed = await client.get(
            "/v1/notifications",
            params={"order_id": order["id"]},
            headers={"Authorization": f"Bearer {stack.keys.notifier_admin}"},
        )
    assert listed.status_code == 200, listed.text
    emails = [n["template"] for n in listed.json()["items"] if n["channel"] == "email"]
    assert sorted(emails) == ["address_ready", "order_created"]
    assert len([m for m in smtp_server.messages if str(m["To"]) == body["email"]]) == 2
