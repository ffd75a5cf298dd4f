"""The embedded default (SQLite under var/): cards, their edits, idempotent messages, the buttons and a
completion's draft work as on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import SecretStr

from servicekit.db import resolve_database_url
from servicekit.migrations import upgrade
from servicekit.settings import PeerSettings
from servicekit.state import service_state
from servicekit.testing import free_port, service_dir
from telegram_gateway.main import create_app
from telegram_gateway.testing import OPERATORS_CHAT, OPERATORS_CHAT_ID, FakeBotApi, make_settings
from telegram_gateway.testing.harness import (
    ANNA,
    GATEWAY_KEY,
    StandInOrderApi,
    StandInWalletPool,
    order_message,
    registered,
    serve,
)


async def test_the_gateway_works_on_sqlite(
    tmp_path: Path, fake_bot_api: FakeBotApi, order_api: StandInOrderApi, wallet_pool: StandInWalletPool
) -> None:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="telegram-gateway")
    await asyncio.to_thread(upgrade, service_dir("telegram-gateway"), url=url)
    port = free_port()
    settings = make_settings(
        database_url=None,
        var_dir=tmp_path,
        fake=fake_bot_api,
        webhook_url=f"http://127.0.0.1:{port}/telegram/webhook",
        order_api=PeerSettings(url=order_api.url, api_key=SecretStr(GATEWAY_KEY)),
        wallet_pool=PeerSettings(url=wallet_pool.url, api_key=SecretStr(GATEWAY_KEY)),
    )
    app = create_app(settings)
    assert service_state(app).runtime.database.engine.dialect.name == "sqlite"
    order = order_api.add_order()
    operator = order_api.add_operator("Anna")

    async with serve(app, port) as gateway:
        await registered(fake_bot_api, gateway)
        await fake_bot_api.send_text(ANNA, f"/start {order_api.issue_code(operator)}")
        body = order_message(order, event="order.created")
        posted, repeated = await asyncio.gather(gateway.post_message(body), gateway.post_message(body))
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        pressed = await fake_bot_api.press(ANNA, card, card.button("Take").callback_data or "")
        answer = await fake_bot_api.answer_to(pressed.query_id or "")
        taken = await gateway.post_message(
            order_message(order, event="order.taken", **order_api.orders[order["id"]])
        )
        await fake_bot_api.press(ANNA, card, card.button("Complete").callback_data or "")
        for text in ("ab" * 32, "=", "cd" * 32, "1500", "-"):  # each answer replies to the latest question
            question = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)[-1]
            await fake_bot_api.send_text(ANNA, text, chat=OPERATORS_CHAT, reply_to=question)

    assert sorted(r.json()["outcome"] for r in (posted, repeated)) == ["duplicate", "posted"]
    assert (
        answer.text
        == f"Order {order['id'][:8]} is yours: complete, cancel, release or escalate it from the card."
    )
    assert taken.json()["outcome"] == "edited"
    assert order_api.orders[order["id"]]["transaction"]["payout"] == {
        "tx_hash": "cd" * 32,
        "amount": "1500",
        "network_fee": None,
    }
    assert card.text.startswith("✅ Completed by Anna")
    assert card.edits == 2  # taken, then completed
