"""A pool running dry, as ops live it: order-api, wallet-pool and notifier as processes, admin mail over real
SMTP. Draining a pool below 10 % raises one alert (not one per order), it escalates while the pool stays
short and nobody acknowledges it, and it resolves once the addresses come back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from notifier.testing import SmtpServer, text_of
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database

ADMIN_EMAIL = "ops@desk.test"
KEY = "pool.low:BTC:bitcoin"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def alerts(notifier: ServiceProcess, stack: Stack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=notifier.url) as client:
        response = await client.get(
            "/v1/alerts", headers={"Authorization": f"Bearer {stack.keys.notifier_admin}"}
        )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def admin_mail(smtp: SmtpServer) -> list[EmailMessage]:
    return [m for m in smtp.messages if str(m["To"]) == ADMIN_EMAIL]


async def test_a_draining_pool_raises_one_alert_that_escalates_and_recovers(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool = stack.wallet_pool(WALLET_POOL_POOL_WATCH_SECONDS="0.2")
    order_api = stack.order_api()
    notifier = stack.notifier(
        smtp_port=smtp_server.port,
        NOTIFIER_TELEGRAM_ENABLED="false",
        NOTIFIER_ADMIN_EMAILS=json.dumps([ADMIN_EMAIL]),
        NOTIFIER_ALERT_CHECK_SECONDS="0.2",
        NOTIFIER_ALERT_WARNING_TO_CRITICAL_SECONDS="600",
        NOTIFIER_ALERT_CRITICAL_TO_EMERGENCY_SECONDS="2",
    )
    services.extend([wallet_pool, order_api, notifier])
    for service in (wallet_pool, notifier, order_api):
        await service.start()
    await import_btc_wallets(wallet_pool, stack, 20)

    orders: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        for n in range(19):  # 19 of 20 taken: 1 free, 5 % < 10 %
            response = await client.post("/v1/orders", json=order_body(customer_email(100 + n)))
            assert response.status_code == 201, response.text
            orders.append(response.json())
        assert {order["status"] for order in orders} == {"awaiting_deposit"}

        [raised] = await eventually(
            lambda: alerts(notifier, stack), until=lambda found: len(found) == 1, within=20
        )
        assert (raised["key"], raised["severity"], raised["status"]) == (KEY, "warning", "open")
        assert raised["details"]["free"] == 1
        [first_mail] = await eventually(
            lambda: admin_mail(smtp_server), until=lambda found: len(found) == 1, within=20
        )
        assert KEY in text_of(first_mail)

        # The last address goes too: the pool is empty, which is worse, so the same alert turns critical ...
        last = await client.post("/v1/orders", json=order_body(customer_email(200)))
        orders.append(last.json())
        # ... and, with nobody acknowledging it, an emergency two seconds later.
        [emergency] = await eventually(
            lambda: alerts(notifier, stack),
            until=lambda found: len(found) == 1 and found[0]["severity"] == "emergency",
            within=30,
        )
        assert emergency["id"] == raised["id"]
        assert (
            emergency["occurrences"] == 2
        )  # two reports from wallet-pool (low, then empty), not one per order

        # Six orders cancelled: 6 of 20 free (30 %) is past threshold + margin, so the pool has recovered.
        for order in orders[:6]:
            cancelled = await client.post(
                f"/v1/orders/{order['id']}/cancel",
                headers={"Authorization": f"Bearer {order['session_token']}"},
            )
            assert cancelled.status_code == 200, cancelled.text

    [resolved] = await eventually(
        lambda: alerts(notifier, stack),
        until=lambda found: len(found) == 1 and found[0]["status"] == "resolved",
        within=30,
    )
    assert resolved["id"] == raised["id"]
    mail = await eventually(
        lambda: admin_mail(smtp_server),
        until=lambda found: any("resolved" in str(m["Subject"]).lower() for m in found),
        within=20,
    )
    # Raised, critical, emergency, resolved: one mail per change, none per order.
    assert len(mail) == 4, [str(m["Subject"]) for m in mail]
