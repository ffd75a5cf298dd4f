"""Customer emails across order-api, wallet-pool and notifier as processes, delivered to a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_emailing
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import completion_body, order_body
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

    # An operator completes the second order: 0.049 BTC arrived for 0.05, the payout adjusted to it.
    admin = {"Authorization": f"Bearer {stack.keys.admin}"}
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        hired = await client.post("/v1/admin/operators", json={"name": "Anna"}, headers=admin)
        operator = {"Authorization": f"Bearer {hired.json()['token']}"}
        taken = await client.post(f"/v1/operator/orders/{second['id']}/take", headers=operator)
        assert taken.status_code == 200, taken.text
        body = completion_body(second, received="0.049", sent="1490.5", payment_difference="adjusted_payout")
        done = await client.post(f"/v1/operator/orders/{second['id']}/status", json=body, headers=operator)
        assert done.status_code == 200, done.text
    completed = [m for m in await mail_to(smtp_server, second_body["email"], 3) if m not in (queued, ready)]
    [completion] = completed
    text = text_of(completion)
    assert "we have received 0.049 BTC and sent you 1490.5 USDT" in text
    assert "You ordered 0.05 BTC" in text
    assert body["transaction"]["payout"]["tx_hash"] in text  # public on the chain
    assert second_body["payout_address"] not in text  # the payout address stays sealed
