"""The desk in Telegram, end to end: order-api, wallet-pool, notifier and telegram-gateway as processes, a real
SMTP server and the fake Telegram Bot API (webhook mode) on loopback.

Two operators link their Telegram accounts with one-time codes; a new order's card appears with a Take
button; both press Take at once and exactly one wins (the card is edited once, the loser is told who has
it); Complete asks for the transaction record as replies, completes the order with it, and releases the deposit
address, so the queued order's customer is emailed that it is ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from desk_testing.stack import Stack, customer_email, import_btc_wallets
from notifier.testing import SmtpServer, mail_to, text_of
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database
from telegram_gateway.testing import OPERATORS_CHAT, OPERATORS_CHAT_ID, ChatMessage, FakeBotApi, TelegramUser

ANNA = TelegramUser(id=7101, first_name="Anna", username="anna_desk")
BORIS = TelegramUser(id=7102, first_name="Boris", username="boris_desk")
CAROL = TelegramUser(id=7103, first_name="Carol", username="carol_desk")
YOURS = "is yours: complete, cancel, release or escalate it from the card."
DEPOSIT_TX = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"  # bitcoin: 64 hex
PAYOUT_TX = "7c2b9f0d1e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"  # TRON: 64 hex


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier", "telegram-gateway") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def link_operator(
    client: httpx.AsyncClient, stack: Stack, bot_api: FakeBotApi, user: TelegramUser
) -> None:
    """An admin creates the operator and issues a one-time code; the operator sends ``/start <code>``."""
    admin = {"Authorization": f"Bearer {stack.keys.admin}"}
    created = await client.post(
        "/v1/admin/operators", json={"name": user.first_name, "role": "operator"}, headers=admin
    )
    assert created.status_code == 201, created.text
    issued = await client.post(
        f"/v1/admin/operators/{created.json()['id']}/telegram-link-code", headers=admin
    )
    assert issued.status_code == 201, issued.text
    delivery = await bot_api.send_text(user, f"/start {issued.json()['code']}")
    assert delivery.status == 200
    [welcome] = bot_api.chat_messages(user.id)
    assert welcome.text.startswith(f"Welcome, {user.first_name}! You are linked as operator.")


async def card_of(bot_api: FakeBotApi, order_id: str) -> ChatMessage:
    async def cards() -> list[ChatMessage]:
        return [m for m in bot_api.chat_messages(OPERATORS_CHAT_ID) if f"Order {order_id[:8]}" in m.text]

    [card] = await eventually(cards, within=20.0, message=f"the card of order {order_id}")
    return card


async def gateway_messages(gateway: ServiceProcess, outcome: str) -> float:
    """How many order cards the gateway has handled with ``outcome`` (its Prometheus counter)."""
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        metrics = (await client.get("/metrics")).text
    for line in metrics.splitlines():
        if line.startswith(f'telegram_gateway_messages_total{{kind="order_card",outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_operators_take_and_complete_an_order_from_telegram(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer, bot_api: FakeBotApi
) -> None:
    wallet_pool, order_api = stack.wallet_pool(), stack.order_api()
    notifier, gateway = stack.notifier(smtp_port=smtp_server.port), stack.telegram_gateway(bot_api=bot_api)
    services.extend([wallet_pool, order_api, notifier, gateway])
    for service in (wallet_pool, order_api, notifier, gateway):
        await service.start()

    async def webhook() -> str | None:
        return bot_api.webhook_url

    await eventually(webhook, within=20.0, message="the gateway sets its webhook")
    [address] = await import_btc_wallets(wallet_pool, stack, 1)

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        await link_operator(client, stack, bot_api, ANNA)
        await link_operator(client, stack, bot_api, BORIS)
        first = (await client.post("/v1/orders", json=order_body(customer_email(71)))).json()
        queued_body = order_body(customer_email(72))
        queued = (await client.post("/v1/orders", json=queued_body)).json()
    assert (first["status"], queued["status"]) == ("awaiting_deposit", "queued")

    card = await card_of(bot_api, first["id"])
    queued_card = await card_of(bot_api, queued["id"])
    assert card.text.startswith("🆕 New order")
    assert [b.text for b in card.buttons()] == ["🙋 Take"]
    assert queued_card.text.startswith("⏳ Queued · in the queue, no address yet")
    assert queued_card.buttons() == []

    take = card.button("Take").callback_data or ""
    pressed = await asyncio.gather(bot_api.press(ANNA, card, take), bot_api.press(BORIS, card, take))
    answers = [await bot_api.answer_to(p.query_id or "") for p in pressed]
    winners = [
        user
        for user, answer in zip((ANNA, BORIS), answers, strict=True)
        if (answer.text or "").endswith(YOURS)
    ]
    assert len(winners) == 1, answers
    [winner] = winners
    [loser_answer] = [a for a in answers if not (a.text or "").endswith(YOURS)]
    assert loser_answer.text == f"Already taken by {winner.first_name}."
    assert card.text.startswith(f"🔧 Taken by {winner.first_name}")
    assert card.edits == 1
    # the notifier's order.taken reaches the gateway too, and finds the card already showing it
    await eventually(
        lambda: gateway_messages(gateway, "edited"), within=20.0, message="order.taken delivered"
    )
    assert card.edits == 1

    completed = await bot_api.press(winner, card, card.button("Complete").callback_data or "")
    asked = await bot_api.answer_to(completed.query_id or "")
    assert asked.text == "Reply to my questions with the transaction record."
    for answer in (DEPOSIT_TX, "=", PAYOUT_TX, "1520.4", "1.1"):  # "=": exactly the amount ordered
        question = bot_api.chat_messages(OPERATORS_CHAT_ID)[-1]
        assert question.text.endswith(f"Complete order {first['id']}.")
        replied = await bot_api.send_text(winner, answer, chat=OPERATORS_CHAT, reply_to=question)
        assert replied.status == 200
    assert bot_api.chat_messages(OPERATORS_CHAT_ID)[-1].text == (
        f"✅ Order {first['id'][:8]} is completed: received 0.05 BTC, sent 1520.4 USDT."
    )
    assert card.text.startswith(f"✅ Completed by {winner.first_name}")
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        as_winner = {
            "Authorization": f"Bearer {stack.keys.telegram_gateway_to_order_api}",
            "X-Operator-Telegram-Id": str(winner.id),
        }
        record = (await client.get(f"/v1/operator/orders/{first['id']}", headers=as_winner)).json()[
            "transaction"
        ]
    deposit, payout = record["deposit"], record["payout"]
    assert (deposit["tx_hash"], Decimal(deposit["amount"])) == (DEPOSIT_TX, Decimal("0.05"))
    assert (payout["tx_hash"], Decimal(payout["amount"]), Decimal(payout["network_fee"])) == (
        PAYOUT_TX,
        Decimal("1520.4"),
        Decimal("1.1"),
    )
    assert record["payment"] == "exact"
    assert card.buttons() == []

    [ready] = [
        m
        for m in await mail_to(smtp_server, queued_body["email"], 2)
        if "deposit address is ready" in str(m["Subject"])
    ]
    assert address in text_of(ready)

    async def queued_buttons() -> list[str]:
        return [b.text for b in queued_card.buttons()]

    await eventually(
        queued_buttons,
        until=lambda buttons: buttons == ["🙋 Take"],
        within=20.0,
        message="the queued order's card becomes takeable",
    )
    assert queued_card.text.startswith("🆕 New order")
    assert "Address: " in queued_card.text


async def test_the_link_an_admin_sets_in_order_api_is_the_bots_and_the_gateways_key_stays_narrow(
    stack: Stack, services: list[ServiceProcess], bot_api: FakeBotApi
) -> None:
    """order-api's operator record is the one truth about the Telegram link: an admin setting or clearing
    ``telegram_user_id`` is what the bot does, no code needed. And the gateway's key acting for an admin is an
    operator at work, never an admin."""
    order_api, gateway = stack.order_api(), stack.telegram_gateway(bot_api=bot_api)
    services.extend([order_api, gateway])
    for service in (order_api, gateway):
        await service.start()

    async def webhook() -> str | None:
        return bot_api.webhook_url

    await eventually(webhook, within=20.0, message="the gateway sets its webhook")

    async def say(text: str) -> str:
        before = len(bot_api.chat_messages(CAROL.id))
        assert (await bot_api.send_text(CAROL, text)).status == 200
        return bot_api.chat_messages(CAROL.id)[before].text

    admin = {"Authorization": f"Bearer {stack.keys.admin}"}
    acting_for_carol = {
        "Authorization": f"Bearer {stack.keys.telegram_gateway_to_order_api}",
        "X-Operator-Telegram-Id": str(CAROL.id),
    }
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        created = await client.post(
            "/v1/admin/operators",
            json={"name": "Carol", "role": "admin", "telegram_user_id": CAROL.id},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        assert await say("/my") == "You hold no open orders. Take one from a card in the operators' chat."
        assert await say("/start") == "You are linked as Carol (admin). /help lists what I can do."

        for method, path, body in [
            ("POST", "/v1/admin/operators", {"name": "Eve", "role": "admin"}),
            ("PATCH", f"/v1/admin/operators/{created.json()['id']}", {"telegram_user_id": None}),
            ("GET", "/v1/audit", None),
            ("GET", "/v1/operator/escalations", None),
        ]:
            refused = await client.request(method, path, json=body, headers=acting_for_carol)
            assert (refused.status_code, refused.json()["code"]) == (403, "acted_for_identity_forbidden")
        assert (await client.get("/v1/operator/orders", headers=acting_for_carol)).status_code == 200

        cleared = await client.patch(
            f"/v1/admin/operators/{created.json()['id']}", json={"telegram_user_id": None}, headers=admin
        )
        assert cleared.status_code == 200, cleared.text
    assert await say("/my") == (
        "Your Telegram account is no longer linked to an operator. Ask an admin for a new link code."
    )
    assert (await say("/help")).startswith("Sorry, this bot works only for the exchange desk's operators.")
