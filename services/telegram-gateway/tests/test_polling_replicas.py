"""Polling with several replicas: one holds the polling lease and alone calls getUpdates; when it dies
(``kill -9``), another takes over within seconds, and an update sent afterwards is handled once."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from servicekit.testing import ServiceProcess, eventually
from telegram_gateway.testing import BOT_TOKEN, OPERATORS_CHAT_ID, FakeBotApi
from telegram_gateway.testing.harness import ANNA, GATEWAY_KEY, StandInOrderApi, StandInWalletPool

LEADER = re.compile(r"^telegram_poller_leader (\S+)$", re.MULTILINE)


def replica(
    name: str, *, host: str, fake: FakeBotApi, database_url: str, order_api: str, wallet_pool: str, logs: Path
) -> ServiceProcess:
    """A gateway process in polling mode, reaching the fake Bot API as ``host`` (its calls carry that name)."""
    assert fake.port is not None
    env = {
        "TELEGRAM_GATEWAY_DATABASE_URL": database_url,
        "TELEGRAM_GATEWAY_VAR_DIR": str(logs / name),
        "TELEGRAM_GATEWAY_BOT_TOKEN": BOT_TOKEN,
        "TELEGRAM_GATEWAY_BOT_API_URL": f"http://{host}:{fake.port}",
        "TELEGRAM_GATEWAY_MODE": "polling",
        "TELEGRAM_GATEWAY_POLLING_TIMEOUT_SECONDS": "1",
        "TELEGRAM_GATEWAY_POLLER_LEASE_RETRY_SECONDS": "0.5",
        "TELEGRAM_GATEWAY_SETUP_RETRY_MAX_SECONDS": "0.5",
        "TELEGRAM_GATEWAY_OPERATORS_CHAT_ID": str(OPERATORS_CHAT_ID),
        "TELEGRAM_GATEWAY_ORDER_API__URL": order_api,
        "TELEGRAM_GATEWAY_ORDER_API__API_KEY": GATEWAY_KEY,
        "TELEGRAM_GATEWAY_WALLET_POOL__URL": wallet_pool,
        "TELEGRAM_GATEWAY_WALLET_POOL__API_KEY": GATEWAY_KEY,
    }
    return ServiceProcess(app="telegram_gateway.main:create_app", env=env, log_path=logs / f"{name}.log")


async def leader(gateway: ServiceProcess) -> float:
    async with httpx.AsyncClient(timeout=2.0) as client:
        metrics = (await client.get(f"{gateway.url}/metrics")).text
    match = LEADER.search(metrics)
    return float(match.group(1)) if match else -1.0


def said(gateway: ServiceProcess, words: str) -> bool:
    return any(words in str(record.get("event", "")) for record in gateway.log_records())


async def test_one_replica_polls_and_another_takes_over_when_it_is_killed(
    database_url: str,
    fake_bot_api: FakeBotApi,
    order_api: StandInOrderApi,
    wallet_pool: StandInWalletPool,
    tmp_path: Path,
) -> None:
    first, second = (
        replica(
            name,
            host=host,
            fake=fake_bot_api,
            database_url=database_url,
            order_api=order_api.url,
            wallet_pool=wallet_pool.url,
            logs=tmp_path,
        )
        for name, host in (("first", "127.0.0.1"), ("second", "localhost"))
    )
    try:
        await first.start()
        await eventually(lambda: leader(first), until=lambda v: v == 1.0, within=20.0, message="first polls")
        await second.start()
        await eventually(
            lambda: _true(said(second, "another replica polls")), within=20.0, message="second waits"
        )
        assert said(first, "became the poller")
        assert await leader(second) == 0.0
        polled_by = {call.host.split(":")[0] for call in fake_bot_api.calls_to("getUpdates")}
        assert polled_by == {"127.0.0.1"}

        await first.stop(sig=signal.SIGKILL)
        killed_at = len(fake_bot_api.calls)
        await eventually(lambda: leader(second), until=lambda v: v == 1.0, within=10.0, message="takeover")
        assert said(second, "became the poller")

        operator = order_api.add_operator("Anna")
        await fake_bot_api.send_text(ANNA, f"/start {order_api.issue_code(operator)}")

        async def welcomed() -> int:
            return sum(m.text.startswith("Welcome, Anna") for m in fake_bot_api.chat_messages(ANNA.id))

        await eventually(welcomed, within=15.0, message="the update is polled by the second replica")
        links = [c for c in order_api.operator_calls() if c.path == "/v1/telegram/links"]
        assert await welcomed() == 1
        assert len(links) == 1
        after_kill = fake_bot_api.calls[killed_at:]
        assert {c.host.split(":")[0] for c in after_kill if c.method == "getUpdates"} == {"localhost"}
    finally:
        await first.stop()
        await second.stop()


async def _true(value: bool) -> bool:
    return value
