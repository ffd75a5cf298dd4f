"""The bot inside the service: registration on start, the webhook's secret token and rate limit, polling
mode and running with Telegram off."""

from __future__ import annotations

import logging

import pytest

from servicekit.db import Database
from servicekit.testing import eventually
from telegram_gateway.testing import OPERATORS_CHAT_ID, WEBHOOK_SECRET, FakeBotApi, TelegramUser
from telegram_gateway.testing.harness import (
    ANNA,
    MALLORY,
    Launch,
    StandInOrderApi,
    StandInWalletPool,
    order_message,
)


async def test_on_start_the_bot_sets_its_webhook_with_the_secret_and_its_commands(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    async with launch() as gateway:
        [webhook] = fake_bot_api.calls_to("setWebhook")
    assert webhook.params["url"] == f"{gateway.url}/telegram/webhook"
    assert webhook.params["secret_token"] == WEBHOOK_SECRET
    assert webhook.params["allowed_updates"] == ["message", "callback_query"]
    assert [c["command"] for c in fake_bot_api.commands] == [
        "my",
        "pool",
        "on",
        "off",
        "cancel",
        "help",
        "start",
    ]
    assert fake_bot_api.calls_to("getUpdates") == []


@pytest.mark.parametrize(
    "secret", [None, "wrong-secret", WEBHOOK_SECRET[:-1]], ids=["missing", "wrong", "prefix"]
)
async def test_a_webhook_call_without_the_right_secret_is_401_and_reaches_no_handler(
    launch: Launch,
    fake_bot_api: FakeBotApi,
    order_api: StandInOrderApi,
    database: Database,
    secret: str | None,
) -> None:
    operator = order_api.add_operator("Anna")
    code = order_api.issue_code(operator)
    async with launch() as gateway:
        sent = await fake_bot_api.send_text(ANNA, f"/start {code}", secret=secret)
        card = await gateway.post_message(order_message(order_api.add_order(), event="order.created"))
        [message] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        pressed = await fake_bot_api.press(
            ANNA, message, message.button("Take").callback_data or "", secret=secret
        )
        raw = await gateway.client.post(
            "/telegram/webhook",
            content=b"not even json",
            headers={} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret},
        )

    assert card.status_code == 200
    assert (sent.status, pressed.status, raw.status_code) == (401, 401, 401)
    assert raw.headers["content-type"] == "application/problem+json"
    assert raw.json()["code"] == "webhook_secret_invalid"
    assert order_api.calls == []  # the code was never redeemed, nothing was taken
    assert fake_bot_api.callback_answers == {}
    assert fake_bot_api.chat_messages(ANNA.id) == []  # no reply to /start
    assert message.edits == 0


async def test_the_right_secret_reaches_the_bot_and_a_malformed_update_is_422(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    async with launch() as gateway:
        sent = await fake_bot_api.send_text(MALLORY, "/help")
        malformed = await gateway.client.post(
            "/telegram/webhook",
            json={"update_id": "soon", "message": {"text": "hi"}},
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )
    assert sent.status == 200
    [reply] = fake_bot_api.chat_messages(MALLORY.id)
    assert "works only for the exchange desk's operators" in reply.text
    assert malformed.status_code == 422
    assert "update_id" in [e["field"] for e in malformed.json()["errors"]]


async def test_the_webhook_is_rate_limited_per_client(launch: Launch, fake_bot_api: FakeBotApi) -> None:
    async with launch(webhook_rate_limit="3/minute") as gateway:
        statuses = [(await fake_bot_api.send_text(MALLORY, "/help")).status for _ in range(3)]
        limited = await gateway.client.post(
            "/telegram/webhook",
            json={"update_id": 1},
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )
    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert len(fake_bot_api.chat_messages(MALLORY.id)) == 3


async def test_the_webhooks_rate_limit_counts_an_ipv6_client_by_its_64(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    async with launch(webhook_rate_limit="3/minute", trusted_proxies=["127.0.0.1/32"]) as gateway:

        async def post_from(client: str) -> int:
            """``/help`` from Mallory, forwarded by the trusted proxy for ``client``."""
            chat = {"id": MALLORY.id, "type": "private"}
            message = {"message_id": 1, "date": 0, "chat": chat, "from": MALLORY.payload(), "text": "/help"}
            response = await gateway.client.post(
                "/telegram/webhook",
                json={"update_id": 1, "message": message},
                headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET, "X-Forwarded-For": client},
            )
            return response.status_code

        one_64 = [await post_from(f"2001:db8:1:2::{n:x}") for n in range(1, 5)]
        next_64 = await post_from("2001:db8:1:3::1")
    assert one_64 == [200, 200, 200, 429]
    assert next_64 == 200
    assert len(fake_bot_api.chat_messages(MALLORY.id)) == 4  # the limited update reached no handler


async def test_a_polling_gateway_refuses_webhook_calls(launch: Launch, fake_bot_api: FakeBotApi) -> None:
    async with launch(mode="polling") as gateway:
        response = await gateway.client.post(
            "/telegram/webhook",
            json={"update_id": 1},
            headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
        )
    assert response.status_code == 409
    assert response.json()["code"] == "webhook_not_in_use"


async def test_polling_mode_works_against_the_bot_api(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    operator = order_api.add_operator("Anna")
    async with launch(mode="polling") as gateway:
        assert fake_bot_api.calls_to("deleteWebhook")
        assert fake_bot_api.calls_to("setWebhook") == []
        await fake_bot_api.send_text(ANNA, f"/start {order_api.issue_code(operator)}")
        await gateway.post_message(order_message(order_api.add_order(), event="order.created"))
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)

        async def linked() -> bool:
            replies = fake_bot_api.chat_messages(ANNA.id)
            return bool(replies) and replies[-1].text.startswith("Welcome, Anna")

        await eventually(linked, within=15.0, message="the /start update is polled and handled")
        pressed = await fake_bot_api.press(ANNA, card, card.button("Take").callback_data or "")
        answer = await fake_bot_api.answer_to(pressed.query_id or "")
    assert pressed.status is None  # queued for getUpdates, not posted
    assert answer.text is not None
    assert answer.text.endswith("is yours: complete, cancel, release or escalate it from the card.")
    assert card.text.startswith("🔧 Taken by Anna")


async def test_with_no_token_the_service_runs_and_says_telegram_is_off(launch: Launch) -> None:
    said: list[str] = []

    class Remember(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    bot_log = logging.getLogger("telegram_gateway.bot")
    remember = Remember()
    bot_log.addHandler(remember)
    try:
        async with launch(bot_token=None) as gateway:
            ready = await gateway.client.get("/health/ready")
            webhook = await gateway.client.post(
                "/telegram/webhook",
                json={"update_id": 1},
                headers={"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
            )
    finally:
        bot_log.removeHandler(remember)
    assert ready.status_code == 200
    assert ready.json()["checks"]["telegram"]["detail"] == "off: no bot token"
    assert webhook.status_code == 409
    assert webhook.json()["code"] == "telegram_disabled"
    assert any(line.startswith("Telegram is off: no TELEGRAM_GATEWAY_BOT_TOKEN") for line in said)


async def test_telegram_unreachable_at_start_delays_registration_but_not_the_service(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    fake_bot_api.fail("setWebhook", status=502, times=2)
    async with launch() as gateway:  # launch waits until the bot is registered
        ready = await gateway.client.get("/health/ready")
    assert len(fake_bot_api.calls_to("setWebhook")) == 3
    assert ready.json()["checks"]["telegram"]["status"] == "ok"
    assert ready.json()["checks"]["telegram"]["detail"] == "webhook: ready as @exchange_desk_test_bot"


async def test_unknown_users_asking_for_orders_or_the_pool_are_refused_acting_for_nobody(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi, wallet_pool: StandInWalletPool
) -> None:
    stranger = TelegramUser(id=999, first_name="Stranger")
    async with launch():
        await fake_bot_api.send_text(stranger, "/my")
        await fake_bot_api.send_text(stranger, "/pool")
    assert [m.text[:27] for m in fake_bot_api.chat_messages(stranger.id)] == [
        "Sorry, this bot works only "
    ] * 2
    assert order_api.operator_calls() == []
    assert order_api.lookups() == [stranger.id]  # who they are, asked once
    assert wallet_pool.calls == []
