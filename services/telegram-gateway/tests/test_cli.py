"""``python -m telegram_gateway``: what Telegram knows of the bot (token, webhook), against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from telegram_gateway.__main__ import main as gateway_cli
from telegram_gateway.testing import BOT_ID, BOT_TOKEN, BOT_USERNAME, FakeBotApi

HOOK = "https://desk.example/telegram/webhook"
SECRET = "hook-secret_0123456789"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        for name, value in {
            "BOT_TOKEN": BOT_TOKEN,
            "BOT_API_URL": api.url,
            "VAR_DIR": str(tmp_path),
            "WEBHOOK_SECRET": SECRET,
        }.items():
            monkeypatch.setenv(f"TELEGRAM_GATEWAY_{name}", value)
        yield api


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(gateway_cli, list(argv))


async def test_check_says_whose_the_token_is_and_where_updates_go(
    fake: FakeBotApi, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("check") == 0
    out = capsys.readouterr().out
    assert f"token OK: the bot @{BOT_USERNAME} (id {BOT_ID}); this gateway runs it in polling mode" in out
    assert "webhook: none" in out


async def test_the_webhook_is_set_shown_and_deleted_from_a_shell(
    fake: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_GATEWAY_WEBHOOK_URL", HOOK)
    assert await cli("set-webhook") == 0
    assert (fake.webhook_url, fake.webhook_secret) == (HOOK, SECRET)
    assert await cli("webhook-info") == 0
    assert f"webhook: {HOOK} (as configured)" in capsys.readouterr().out

    monkeypatch.setenv("TELEGRAM_GATEWAY_WEBHOOK_URL", "https://elsewhere.example/hook")
    assert await cli("webhook-info") == 0
    assert "TELEGRAM_GATEWAY_WEBHOOK_URL is https://elsewhere.example/hook" in capsys.readouterr().out

    assert await cli("delete-webhook") == 0
    assert fake.webhook_url is None
    assert await cli("webhook-info") == 0
    assert "webhook: none" in capsys.readouterr().out


async def test_a_refused_token_a_missing_token_and_a_webhook_without_a_secret_are_one_line_each(
    fake: FakeBotApi, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELEGRAM_GATEWAY_BOT_TOKEN", "7000000001:not-the-token")
    assert await cli("check") == 1
    assert capsys.readouterr().err.startswith("Telegram refused check: ")

    monkeypatch.setenv("TELEGRAM_GATEWAY_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.delenv("TELEGRAM_GATEWAY_WEBHOOK_SECRET")
    assert await cli("set-webhook", "--url", HOOK) == 2
    assert "TELEGRAM_GATEWAY_WEBHOOK_SECRET is not set" in capsys.readouterr().err
    assert fake.webhook_url is None

    monkeypatch.setenv("TELEGRAM_GATEWAY_BOT_TOKEN", "")
    assert await cli("check") == 2
    assert (
        capsys.readouterr().err
        == "cannot check: No bot token is configured: Telegram is off on this gateway.\n"
    )
