"""Customer emails across order-api, wallet-pool and notifier as processes, delivered to a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from desk_stack import Stack
from test_order_intake import import_btc_wallets, order_body

from notifier.testing import SmtpServer
from servicekit.testing import ServiceProcess, eventually, migrated_database


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content())


async def mail_to(smtp: SmtpServer, recipient: str, count: int) -> list[EmailMessage]:
    async def received() -> list[EmailMessage]:
        return [m for m in smtp.messages if str(m["To"]) == recipient]

    return await eventually(
        received,
        until=lambda found: len(found) >= count,
        within=15.0,
        message=f"{count} email(s) to {recipient}",
    )


async def test_customers_are_emailed_about_their_orders(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool = stack.wallet_pool()
    order_api = stack.order_api()
    notifier = stack.notifier(smtp_port=smtp_server.port, NOTIFIER_TELEGRAM_ENABLED="false")
    services.extend([wallet_pool, order_api, notifier])
    for service in (wallet_pool, notifier, order_api):
        await service.start()
    [address] = await import_btc_wallets(wallet_pool, stack, 1)

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        first_body, second_body = order_body(21, amount="0.0375"), order_body(22)
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
