"""Customer emails across order-api, wallet-pool and notifier as processes, delivered to a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_emailing
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, migrated_database


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def test_customers_are_emailed_about_their_orders(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool, order_api, _ = await start_emailing(stack, services, smtp_port=smtp_server.port)
    [address] = await import_btc_wallets(wallet_pool, stack, 1)

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        first_body, second_body = (
            order_body(customer_email(21), amount="0.0375"),
            order_body(customer_email(22)),
        )
        first = (await client.post("/v1/orders", json=first_body)).json()
        second = (await client.post("/v1/orders", json=second_body)).json()
        assert (first["status"], first["deposit_address"]) == ("awaiting_deposit", address)
        assert second["status"] == "queued"

        [created] = await mail_to(smtp_server, first_body["email"], 1)
        assert "0.0375" in text_of(created)
        assert address in text_of(created)

        [queued] = await mail_to(smtp_server, second_body["email"], 1)
        assert "in the queue" in text_of(queued)
        assert address not in text_of(queued)

        cancelled = await client.post(
            f"/v1/orders/{first['id']}/cancel", headers={"Authorization": f"Bearer {first['session_token']}"}
        )
        assert cancelled.status_code == 200, cancelled.text

    [ready] = [m for m in await mail_to(smtp_server, second_body["email"], 2) if m is not queued]
    assert "deposit address is ready" in str(ready["Subject"])
    assert address in text_of(ready)
