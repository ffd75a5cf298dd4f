"""Settings refuse what would only fail later, at Telegram: a malformed token, a webhook without a secret, a
secret Telegram would not accept; an empty value means not configured. What the gateway builds from them at
start-up refuses to start with one line rather than fail at the first request."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from servicekit.settings import StartupRefusedError
from telegram_gateway.main import create_app
from telegram_gateway.settings import Settings
from telegram_gateway.testing import BOT_TOKEN, make_settings


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(var_dir=tmp_path, **values)  # type: ignore[arg-type]


def test_the_mode_follows_the_public_url_unless_set(tmp_path: Path) -> None:
    assert settings(tmp_path, bot_token=BOT_TOKEN).bot_mode == "polling"
    hooked = settings(
        tmp_path, bot_token=BOT_TOKEN, webhook_url="https://desk.example/telegram/webhook", webhook_secret="s"
    )
    assert hooked.bot_mode == "webhook"
    assert (
        settings(tmp_path, bot_token=BOT_TOKEN, mode="polling", webhook_url="https://x").bot_mode == "polling"
    )


def test_webhook_mode_needs_a_secret_telegram_accepts(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="webhook mode needs TELEGRAM_GATEWAY_WEBHOOK_SECRET"):
        settings(tmp_path, bot_token=BOT_TOKEN, mode="webhook")
    with pytest.raises(ValidationError, match="webhook_secret"):
        settings(tmp_path, webhook_secret="has spaces and !")


def test_a_malformed_token_is_refused_and_an_empty_one_means_off(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="bot_token"):
        settings(tmp_path, bot_token="not-a-token")
    off = settings(tmp_path, bot_token="", operators_chat_id="", webhook_url=" ")
    assert (off.telegram_enabled, off.operators_chat_id, off.webhook_url) == (False, None, None)


def test_the_support_chat_falls_back_to_the_operators_chat(tmp_path: Path) -> None:
    assert settings(tmp_path, operators_chat_id=-100).chat_id_for("support") == -100
    assert settings(tmp_path, operators_chat_id=-100, support_chat_id=-200).chat_id_for("support") == -200


def test_a_trusted_proxy_that_is_no_network_stops_the_gateway_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(StartupRefusedError) as refused:
        create_app(
            make_settings(database_url=None, var_dir=tmp_path, fake=None, trusted_proxies=["10.0.0.0/33"])
        )
    message = str(refused.value)
    assert message.startswith(
        "telegram-gateway cannot start: TELEGRAM_GATEWAY_TRUSTED_PROXIES: '10.0.0.0/33'"
    )
    assert "\n" not in message
