"""No personal data in clear in any file the desk keeps: the services as processes on the embedded default
(SQLite files, WAL included, in one ``var/``), an order placed and a sign-in code emailed; and none in their
logs."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from desk_testing.stack import Stack, import_btc_wallets
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import PAYOUT_USDT, order_body
from servicekit.testing import ServiceProcess, eventually, migrate_embedded


def _files_holding(
    directory: Path, secrets: dict[str, str], *, skip: str | None = None
) -> dict[str, list[str]]:
    """Which of ``secrets`` (by name) each file under ``directory`` holds in clear."""
    found: dict[str, list[str]] = {}
    for path in directory.rglob("*"):
        if not path.is_file() or (skip and skip in path.relative_to(directory).parts):
            continue
        content = path.read_bytes().lower()
        held = [name for name, value in secrets.items() if value.lower().encode() in content]
        if held:
            found[str(path.relative_to(directory))] = held
    return found


async def test_no_file_and_no_log_holds_a_customers_address_payout_address_or_code(
    tmp_path: Path, services: list[ServiceProcess], smtp_server: SmtpServer
) -> None:
    var_dir = tmp_path / "var"
    await migrate_embedded(var_dir, "order-api", "wallet-pool", "notifier")
    logs = tmp_path / "logs"
    logs.mkdir()
    stack = Stack(database_url=None, logs=logs, var_dir=var_dir)
    wallet_pool = stack.wallet_pool()
    notifier = stack.notifier(smtp_port=smtp_server.port, NOTIFIER_TELEGRAM_ENABLED="false")
    order_api = stack.order_api()
    services.extend([wallet_pool, notifier, order_api])
    for service in (wallet_pool, notifier, order_api):
        await service.start()
    await import_btc_wallets(wallet_pool, stack, 1)

    body = order_body("Carol.Rest@example.com")
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        created = await client.post("/v1/orders", json=body)
        assert created.status_code == 201, created.text
        requested = await client.post("/v1/auth/email-code", json={"email": body["email"]})
        assert requested.status_code == 202, requested.text
    mails = await mail_to(smtp_server, body["email"], 2)
    [code] = [
        m for mail in mails for m in re.findall(r"\b\d{6}\b", text_of(mail)) if "code" in str(mail["Subject"])
    ]

    async def delivered_everything() -> list[str]:
        async with httpx.AsyncClient(base_url=notifier.url) as client:
            response = await client.get(
                "/v1/notifications", headers={"Authorization": f"Bearer {stack.keys.notifier_admin}"}
            )
        return [n["status"] for n in response.json()["items"]]

    await eventually(delivered_everything, until=lambda statuses: statuses == ["sent", "sent"])

    secrets = {"email": body["email"], "payout address": PAYOUT_USDT, "code": code}
    stored = sorted(p.name for p in var_dir.iterdir())
    assert {"order-api.db", "notifier.db", "wallet-pool.db"} <= set(stored)
    assert any(name.endswith("-wal") for name in stored), (
        stored
    )  # the running services' WAL files are read too
    # The mail drop is left out: its files are the delivered messages themselves.
    assert _files_holding(var_dir, secrets, skip="mail") == {}
    assert _files_holding(stack.logs, secrets) == {}
