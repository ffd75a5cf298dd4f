"""A stuck release, as ops live it: order-api, wallet-pool and notifier as processes, admin mail over real
SMTP. wallet-pool is down when an order is cancelled, so the `order.closed` that gives its address back is
dead-lettered; the admins get one critical alert saying so, `/metrics` counts it, an admin replays it once
wallet-pool is back, the address is released and the alert resolves."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from notifier.testing import SmtpServer
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database

ADMIN_EMAIL = "ops@desk.test"
TITLE = "1 event dead in order-api's outbox"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def admin_mail(smtp: SmtpServer) -> list[str]:
    """The subjects of the mail the admins got (unfolded)."""
    mail: list[EmailMessage] = [m for m in smtp.messages if str(m["To"]) == ADMIN_EMAIL]
    return [" ".join(str(m["Subject"]).split()) for m in mail]


async def test_a_dead_release_is_an_alert_until_an_admin_replays_it(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    wallet_pool = stack.wallet_pool()
    order_api = stack.order_api(
        ORDER_API_OUTBOX_MAX_ATTEMPTS="2", ORDER_API_OUTBOX_DEAD_LETTER_CHECK_SECONDS="0.2"
    )
    notifier = stack.notifier(
        smtp_port=smtp_server.port,
        NOTIFIER_TELEGRAM_ENABLED="false",
        NOTIFIER_ADMIN_EMAILS=json.dumps([ADMIN_EMAIL]),
        NOTIFIER_ALERT_CHECK_SECONDS="0.2",
    )
    services.extend([wallet_pool, order_api, notifier])
    for service in (wallet_pool, notifier, order_api):
        await service.start()
    await import_btc_wallets(wallet_pool, stack, 2)
    admin = {"Authorization": f"Bearer {stack.keys.admin}"}

    async with (
        httpx.AsyncClient(base_url=order_api.url) as desk,
        httpx.AsyncClient(base_url=wallet_pool.url) as pool,
    ):
        order = (await desk.post("/v1/orders", json=order_body(customer_email(1)))).json()
        assert order["status"] == "awaiting_deposit"
        await wallet_pool.stop()
        cancelled = await desk.post(
            f"/v1/orders/{order['id']}/cancel", headers={"Authorization": f"Bearer {order['session_token']}"}
        )
        assert cancelled.status_code == 200, cancelled.text

        # wallet-pool cannot be told: the release is dead-lettered, and the admins hear of it once.
        async def dead() -> list[dict[str, str]]:
            answer = await desk.get("/v1/admin/outbox", params={"status": "dead"}, headers=admin)
            return list(answer.json()["items"])

        [closed] = await eventually(dead, message="the release was not dead-lettered", within=30)
        assert (closed["event_type"], closed["aggregate_id"]) == ("order.closed", order["id"])
        await eventually(
            lambda: admin_mail(smtp_server),
            until=lambda subjects: f"[critical] New alert: {TITLE}" in subjects,
            within=30,
        )
        metrics = (await desk.get("/metrics")).text
        assert 'outbox_dead{destination="wallet-pool"} 1.0' in metrics

        # wallet-pool is back; an admin replays the release and the address goes back to the pool.
        await wallet_pool.start()
        replayed = await desk.post(f"/v1/admin/outbox/{closed['id']}/replay", headers=admin)
        assert replayed.status_code == 200, replayed.text

        async def allocation() -> str:
            answer = await pool.get(
                f"/v1/allocations/{order['id']}",
                headers={"Authorization": f"Bearer {stack.keys.wallet_pool_admin}"},
            )
            return str(answer.json().get("status"))

        await eventually(allocation, until=lambda status: status == "released", within=30)

    subjects = await eventually(
        lambda: admin_mail(smtp_server),
        until=lambda found: f"[resolved] Back to normal: {TITLE}" in found,
        within=30,
    )
    assert sorted(subjects) == [f"[critical] New alert: {TITLE}", f"[resolved] Back to normal: {TITLE}"]
