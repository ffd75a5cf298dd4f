"""Balancing the operators' workload, end to end: order-api, wallet-pool, notifier and telegram-gateway as
processes, the fake Telegram Bot API on loopback, one desk for the whole story.

With a cap of one held order, Anna's second take is refused over REST and the bot says so; ``/off`` and
``/on`` mark her away and back (in her language); she escalates her order and support, from the escalated
order's card in the support chat, reassigns it to Boris by name: both are told privately and the card shows
Boris. Deactivating Boris puts the order back in the pool at once, its card posted again.

Auto-assignment (``ORDER_API_AUTO_ASSIGN``) has its own desk: an order assigned and accepted from the bot's
private message, another left untouched until it lapses back to the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from desk_testing.stack import Stack, customer_email, import_btc_wallets, start_services
from notifier.testing import SmtpServer
from order_api.db import SCHEMA as ORDER_API_SCHEMA
from order_api.testing import order_body
from servicekit.testing import ServiceProcess, eventually, migrated_database
from telegram_gateway.testing import (
    OPERATORS_CHAT_ID,
    SUPPORT_CHAT_ID,
    Chat,
    ChatMessage,
    FakeBotApi,
    TelegramUser,
)

ANNA = TelegramUser(id=7201, first_name="Anna", language_code="ru")
BORIS = TelegramUser(id=7202, first_name="Boris")
SAM = TelegramUser(id=7203, first_name="Sam")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api", "wallet-pool", "notifier", "telegram-gateway") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def hire(client: httpx.AsyncClient, stack: Stack, user: TelegramUser, role: str) -> dict[str, Any]:
    """An admin creates the operator with their Telegram account linked."""
    created = await client.post(
        "/v1/admin/operators",
        json={"name": user.first_name, "role": role, "telegram_user_id": user.id},
        headers={"Authorization": f"Bearer {stack.keys.admin}"},
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def open_desk(
    stack: Stack,
    services: list[ServiceProcess],
    smtp_server: SmtpServer,
    bot_api: FakeBotApi,
    **order_api_env: str,
) -> ServiceProcess:
    """The four services started (order-api with ``order_api_env``), the bot's webhook set, two BTC wallets
    free; returns order-api."""
    wallet_pool, order_api = stack.wallet_pool(), stack.order_api(**order_api_env)
    notifier, gateway = stack.notifier(smtp_port=smtp_server.port), stack.telegram_gateway(bot_api=bot_api)
    await start_services(services, wallet_pool, order_api, notifier, gateway)

    async def webhook() -> str | None:
        return bot_api.webhook_url

    await eventually(webhook, within=20.0, message="the gateway sets its webhook")
    await import_btc_wallets(wallet_pool, stack, 2)
    return order_api


async def card_in(bot_api: FakeBotApi, chat_id: int, order_id: str, *, count: int = 1) -> list[ChatMessage]:
    async def cards() -> list[ChatMessage]:
        return [m for m in bot_api.chat_messages(chat_id) if f"rder {order_id[:8]}" in m.text]

    return await eventually(
        cards, until=lambda found: len(found) == count, within=20.0, message=f"{count} card(s) of {order_id}"
    )


async def said_to(bot_api: FakeBotApi, user: TelegramUser, *, count: int) -> list[str]:
    async def texts() -> list[str]:
        return [m.text for m in bot_api.chat_messages(user.id)]

    return await eventually(
        texts, until=lambda found: len(found) >= count, within=20.0, message=f"{count} messages to {user}"
    )


async def test_cap_presence_reassignment_and_deactivation_over_rest_and_telegram(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer, bot_api: FakeBotApi
) -> None:
    order_api = await open_desk(stack, services, smtp_server, bot_api, ORDER_API_OPERATOR_MAX_HELD_ORDERS="1")

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        anna, boris = (
            await hire(client, stack, ANNA, "operator"),
            await hire(client, stack, BORIS, "operator"),
        )
        await hire(client, stack, SAM, "support")
        first = (await client.post("/v1/orders", json=order_body(customer_email(81)))).json()
        second = (await client.post("/v1/orders", json=order_body(customer_email(82)))).json()
        [card] = await card_in(bot_api, OPERATORS_CHAT_ID, first["id"])
        [second_card] = await card_in(bot_api, OPERATORS_CHAT_ID, second["id"])

        # the cap: Anna holds one order; a second take is refused, over REST and in Telegram
        await bot_api.press(ANNA, card, card.button("Take").callback_data or "")
        anna_auth = {"Authorization": f"Bearer {anna['token']}"}
        over_rest = await client.post(f"/v1/operator/orders/{second['id']}/take", headers=anna_auth)
        assert (over_rest.status_code, over_rest.json()["code"]) == (409, "operator_at_capacity")
        pressed = await bot_api.press(ANNA, second_card, second_card.button("Take").callback_data or "")
        refused = await bot_api.answer_to(pressed.query_id or "")
        assert refused.text == "У вас уже 1 заказ — сначала завершите или верните один."  # noqa: RUF001
        assert second_card.text.startswith("🆕 New order")

        # presence: away and back, in Anna's language; she keeps her order meanwhile
        await bot_api.send_text(ANNA, "/off")
        await bot_api.send_text(ANNA, "/on")
        away, back = await said_to(bot_api, ANNA, count=2)
        assert away.startswith("🌙 Вы отошли")
        assert back == "🟢 Вы на месте: у вас 1 заказ (ваш предел — 1)."  # noqa: RUF001
        presence = (await client.get("/v1/operator/presence", headers=anna_auth)).json()
        assert (presence["status"], presence["held_orders"]) == ("available", 1)

        # reassign: support presses Reassign on the escalated order's card and names Boris
        escalated = await client.post(
            f"/v1/operator/orders/{first['id']}/escalate", json={"comment": "Paid twice?"}, headers=anna_auth
        )
        assert escalated.status_code == 201, escalated.text
        [support_card] = await card_in(bot_api, SUPPORT_CHAT_ID, first["id"])
        await bot_api.press(SAM, support_card, support_card.button("Reassign").callback_data or "")
        _, prompt = await card_in(bot_api, SUPPORT_CHAT_ID, first["id"], count=2)
        assert "reply to this message with the name of the operator" in prompt.text
        support_chat = Chat(id=SUPPORT_CHAT_ID, title="Desk support")
        await bot_api.send_text(SAM, "boris", chat=support_chat, reply_to=prompt)

        async def held_by() -> str | None:
            order = await client.get(f"/v1/operator/orders/{first['id']}", headers=anna_auth)
            holder: str | None = order.json()["operator_id"]
            return holder

        await eventually(held_by, until=lambda holder: holder == boris["id"], within=20.0)
        told_anna = (await said_to(bot_api, ANNA, count=3))[-1]
        assert "was handed to Boris by support: you no longer hold it." in told_anna
        [told_boris] = await said_to(bot_api, BORIS, count=1)
        assert "is yours now, handed over from Anna by support." in told_boris

        async def card_text() -> str:
            return card.text

        await eventually(card_text, until=lambda text: text.startswith("🔧 Taken by Boris"), within=20.0)

        # deactivation: Boris's order is back in the pool at once, its card posted again
        deactivated = await client.patch(
            f"/v1/admin/operators/{boris['id']}",
            json={"active": False},
            headers={"Authorization": f"Bearer {stack.keys.admin}"},
        )
        assert deactivated.status_code == 200, deactivated.text
        _, reposted = await card_in(bot_api, OPERATORS_CHAT_ID, first["id"], count=2)
        assert reposted.text.startswith("🔁 Back in the pool")
        assert [b.text for b in reposted.buttons()] == ["🙋 Take"]


async def past_lapse(database_url: str, operator_id: str) -> None:
    """The clock moved past ``lapses_at`` of the operator's pending auto-assignments (the timeout is 300 s)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    f"UPDATE {ORDER_API_SCHEMA}.order_assignment SET lapses_at = now() - interval '1 second' "  # noqa: S608 - a constant
                    "WHERE operator_id = :operator_id AND outcome IS NULL"
                ),
                {"operator_id": operator_id},
            )
    finally:
        await engine.dispose()


async def test_auto_assignment_over_rest_and_telegram_accepted_or_lapsed_back_to_the_pool(
    stack: Stack, services: list[ServiceProcess], smtp_server: SmtpServer, bot_api: FakeBotApi
) -> None:
    """With ``ORDER_API_AUTO_ASSIGN`` on, a new order goes to Anna (idle longest), who is told privately and
    accepts it from that message; the next goes to Boris (Anna holds one), who leaves it: at its timeout it
    is back in the pool (its card posted again, Boris told), and with Anna away nobody gets it."""
    assert stack.database_url is not None
    order_api = await open_desk(
        stack, services, smtp_server, bot_api, ORDER_API_AUTO_ASSIGN="true", ORDER_API_SWEEP_SECONDS="0.2"
    )

    async with httpx.AsyncClient(base_url=order_api.url) as client:
        anna, boris = (
            await hire(client, stack, ANNA, "operator"),
            await hire(client, stack, BORIS, "operator"),
        )
        anna_auth = {"Authorization": f"Bearer {anna['token']}"}
        boris_auth = {"Authorization": f"Bearer {boris['token']}"}

        async def detail(order_id: str) -> dict[str, Any]:
            body: dict[str, Any] = (
                await client.get(f"/v1/operator/orders/{order_id}", headers=anna_auth)
            ).json()
            return body

        # Anna, idle the longest, gets the first order: the card shows her, she is told with an Accept button
        first = (await client.post("/v1/orders", json=order_body(customer_email(91)))).json()
        [told_anna] = await said_to(bot_api, ANNA, count=1)
        assert told_anna.startswith(f"📌 Order {first['id'][:8]} (")
        assert "is assigned to you" in told_anna
        [card] = await card_in(bot_api, OPERATORS_CHAT_ID, first["id"])

        async def card_text() -> str:
            return card.text

        await eventually(card_text, until=lambda text: text.startswith("🔧 Taken by Anna"), within=20.0)
        assigned = await detail(first["id"])
        assert (assigned["operator_id"], assigned["assignment"]["outcome"]) == (anna["id"], "pending")
        [private] = bot_api.chat_messages(ANNA.id)
        pressed = await bot_api.press(ANNA, private, private.button("Accept").callback_data or "")
        answer = await bot_api.answer_to(pressed.query_id or "")
        assert answer.text == f"Заказ {first['id'][:8]} ваш: он остаётся за вами."
        assert (await detail(first["id"]))["assignment"]["outcome"] == "accepted"

        # Boris holds fewer, so he gets the second; he does nothing until it lapses, with Anna away by then
        second = (await client.post("/v1/orders", json=order_body(customer_email(92)))).json()
        [told_boris] = await said_to(bot_api, BORIS, count=1)
        assert told_boris.startswith(f"📌 Order {second['id'][:8]} (")
        await bot_api.send_text(ANNA, "/off")
        await said_to(bot_api, ANNA, count=2)
        await past_lapse(stack.database_url, boris["id"])
        _, reposted = await card_in(bot_api, OPERATORS_CHAT_ID, second["id"], count=2)
        assert reposted.text.startswith("🔁 Back in the pool")
        assert [b.text for b in reposted.buttons()] == ["🙋 Take"]
        lapse = (await said_to(bot_api, BORIS, count=2))[-1]
        assert "not accepted in time: it is back in the pool." in lapse

        lapsed = await detail(second["id"])
        takeable = (await client.get("/v1/operator/orders", headers=boris_auth)).json()["items"]
        stats = (await client.get("/v1/operator/stats", headers=boris_auth)).json()
        assert (lapsed["status"], lapsed["operator_id"]) == ("awaiting_deposit", None)
        assert (lapsed["assignment"]["operator_id"], lapsed["assignment"]["outcome"]) == (
            boris["id"],
            "lapsed",
        )
        assert [o["id"] for o in takeable] == [
            second["id"]
        ]  # Anna is away, Boris had it: it stays in the pool
        assert (stats["mine"]["processed"], stats["mine"]["open_orders"]) == (0, 0)  # a lapse is not a take
        assert (await detail(first["id"]))["operator_id"] == anna["id"]  # accepted: it stayed with her
