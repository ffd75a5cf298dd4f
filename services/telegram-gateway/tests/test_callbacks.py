"""Operators at work in Telegram: linking with a one-time code or by an admin in order-api, the card's buttons
acting on order-api (a stand-in with order-api's rules), commands, and strangers who never get through."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

from servicekit.db import Database
from servicekit.testing import eventually
from telegram_gateway.cards.models import OrderSnapshot
from telegram_gateway.testing import (
    OPERATORS_CHAT,
    OPERATORS_CHAT_ID,
    SUPPORT_CHAT,
    SUPPORT_CHAT_ID,
    FakeBotApi,
    TelegramUser,
)
from telegram_gateway.testing.harness import (
    ANNA,
    BORIS,
    MALLORY,
    Desk,
    Launch,
    StandInOrderApi,
    open_desk,
    order_message,
)


async def test_start_with_a_code_links_the_telegram_user_to_the_operator(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    operator = order_api.add_operator("Anna")
    code = order_api.issue_code(operator)
    async with launch():
        delivery = await fake_bot_api.send_text(ANNA, f"/start {code}")
        await fake_bot_api.send_text(ANNA, "/my")
    assert delivery.status == 200
    redeem, mine = order_api.operator_calls()
    assert (redeem.method, redeem.path) == ("POST", "/v1/telegram/links")
    assert redeem.body == {"code": code, "telegram_user_id": ANNA.id, "telegram_username": "anna_ops"}
    assert mine.path == "/v1/operator/orders/mine"
    assert order_api.operators[operator]["telegram_user_id"] == ANNA.id  # order-api holds the link
    assert order_api.lookups() == [ANNA.id]  # asked once, before the link; the link itself is remembered
    welcome, my = fake_bot_api.chat_messages(ANNA.id)
    assert welcome.text.startswith("Welcome, Anna! You are linked as operator.")
    assert my.text == "You hold no open orders. Take one from a card in the operators' chat."


async def test_an_operator_an_admin_links_or_unlinks_in_order_api_is_welcome_or_refused_alike(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    """No code needed: order-api's operator record is the truth (an admin set ``telegram_user_id``)."""
    operator = order_api.add_operator("Anna")
    order_api.link(operator, ANNA)

    async def answer(text: str) -> str:
        before = len(fake_bot_api.chat_messages(ANNA.id))
        await fake_bot_api.send_text(ANNA, text)
        return fake_bot_api.chat_messages(ANNA.id)[before].text

    async with launch(operator_cache_seconds=0.5):
        assert await answer("/my") == "You hold no open orders. Take one from a card in the operators' chat."
        assert await answer("/start") == "You are linked as Anna (operator). /help lists what I can do."
        order_api.operators[operator]["telegram_user_id"] = None  # an admin clears the link
        assert await answer("/my") == (  # order-api refuses at once, whatever the cache says
            "Your Telegram account is no longer linked to an operator. Ask an admin for a new link code."
        )
        assert (await answer("/help")).startswith("Sorry, this bot works only for the exchange desk's")

        order_api.link(operator, ANNA)  # linked again: welcome within the cache's lifetime
        await eventually(
            lambda: answer("/help"),
            until=lambda text: text.startswith("Exchange Desk bot\n"),
            within=5.0,
            message="the bot learns of the new link",
        )
        order_api.operators[operator]["telegram_user_id"] = None  # cleared again: the menu goes too
        await eventually(
            lambda: answer("/pool"),
            until=lambda text: text.startswith("Sorry, this bot works only for the exchange desk's"),
            within=5.0,
            message="the bot learns of the cleared link",
        )


async def test_with_redis_every_replica_reads_one_cached_answer(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi, redis_url: str
) -> None:
    operator = order_api.add_operator("Anna")
    async with launch(redis_url=redis_url):
        await fake_bot_api.send_text(ANNA, f"/start {order_api.issue_code(operator)}")
    async with launch(redis_url=redis_url):  # another replica (or a restart) knows Anna without asking
        await fake_bot_api.send_text(ANNA, "/my")
    assert order_api.lookups() == [ANNA.id]  # once, before the link
    assert fake_bot_api.chat_messages(ANNA.id)[-1].text.startswith("You hold no open orders.")


async def test_a_wrong_or_used_code_links_nobody(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    code = order_api.issue_code(order_api.add_operator("Anna"))
    async with launch():
        await fake_bot_api.send_text(ANNA, f"/start {code}")
        await fake_bot_api.send_text(MALLORY, f"/start {code}")
        await fake_bot_api.send_text(MALLORY, "/start NOTACODE")
    assert [m.text for m in fake_bot_api.chat_messages(MALLORY.id)] == [
        "That code is wrong, expired or already used. Ask an admin for a new one."
    ] * 2
    assert [o["telegram_user_id"] for o in order_api.operators.values()] == [ANNA.id]


async def test_strangers_are_refused_politely_and_never_reach_order_api(desk: Desk) -> None:
    refused = await desk.press(MALLORY, "Take")
    [my] = await desk.say(MALLORY, "/my")
    [hello] = await desk.say(MALLORY, "/start")
    in_group = await desk.say(MALLORY, "nice bot", chat=OPERATORS_CHAT)

    assert refused.show_alert
    assert refused.text is not None
    assert refused.text.startswith("Sorry, this bot works only for the exchange desk's operators.")
    assert my.text.startswith("Sorry, this bot works only for the exchange desk's operators.")
    assert hello.text.startswith("Hello! To link your account, ask an admin for a link code")
    assert in_group == []  # chatter in the group is not answered
    assert desk.order_api.operator_calls() == []
    assert desk.order_api.lookups() == [MALLORY.id]  # "nobody" is remembered too
    assert desk.card.edits == 0


async def test_take_makes_the_order_mine_and_edits_the_card_for_everyone(desk: Desk) -> None:
    answer = await desk.press(ANNA, "Take")

    assert (
        answer.text
        == f"Order {desk.order['id'][:8]} is yours: complete, cancel, release or escalate it from the card."
    )
    [take] = desk.order_api.operator_calls()
    assert take.path == f"/v1/operator/orders/{desk.order['id']}/take"
    assert take.headers["X-Operator-Telegram-Id"] == str(ANNA.id)
    assert desk.card.edits == 1
    assert desk.card.text.startswith("🔧 Taken by Anna")
    assert [b.text for b in desk.card.buttons()] == ["✅ Complete", "✖️ Cancel", "↩️ Release", "🆘 Escalate"]


async def test_accept_on_the_private_message_of_an_order_assigned_to_me_keeps_it_mine(desk: Desk) -> None:
    held: dict[str, Any] = {
        "status": "in_progress",
        "operator_id": desk.operators["Anna"],
        "operator_name": "Anna",
        "version": 2,
    }
    desk.order_api.orders[desk.order["id"]].update(held)
    told = await desk.gateway.post_message(
        {
            **order_message(desk.order, event="order.assigned", **held),
            "assignment": {"telegram_user_id": ANNA.id, "lapses_at": "2026-11-21T12:05:00+00:00"},
        }
    )
    assert told.status_code == 200, told.text
    [private] = [m for m in desk.fake.chat_messages(ANNA.id) if "assigned to you" in m.text]

    refused = await desk.press(BORIS, "Accept", card=private)
    accepted = await desk.press(ANNA, "Accept", card=private)

    assert refused.text == "Anna holds this order: only they can do this."
    assert accepted.text == f"Order {desk.order['id'][:8]} is yours: it stays with you."
    assert [c.path for c in desk.order_api.operator_calls()] == [
        f"/v1/operator/orders/{desk.order['id']}/accept"
    ] * 2
    assert desk.card.text.startswith("🔧 Taken by Anna")


async def test_two_operators_press_take_at_once_and_exactly_one_wins(desk: Desk) -> None:
    anna, boris = await asyncio.gather(desk.press(ANNA, "Take"), desk.press(BORIS, "Take"))

    winner = (
        "Anna"
        if anna.text
        and anna.text.endswith("is yours: complete, cancel, release or escalate it from the card.")
        else "Boris"
    )
    loser_answer = boris if winner == "Anna" else anna
    assert loser_answer.text == f"Already taken by {winner}."
    assert loser_answer.show_alert
    assert desk.card.edits == 1
    assert desk.card.text.startswith(f"🔧 Taken by {winner}")


async def test_cancel_and_release(desk: Desk) -> None:
    await desk.press(ANNA, "Take")
    released = await desk.press(ANNA, "Release")
    assert released.text == f"Order {desk.order['id'][:8]} is back in the pool."
    assert [b.text for b in desk.card.buttons()] == ["🙋 Take"]

    await desk.press(BORIS, "Take")
    cancelled = await desk.press(BORIS, "Cancel")
    assert cancelled.text == f"Order {desk.order['id'][:8]} is cancelled."
    assert desk.card.text.startswith("✖️ Cancelled (held by Boris)")
    assert desk.order_api.orders[desk.order["id"]]["status"] == "cancelled"


async def test_only_the_holder_may_drive_the_order(desk: Desk) -> None:
    await desk.press(ANNA, "Take")
    answer = await desk.press(BORIS, "Complete")
    assert answer.text == "Anna holds this order: only they can do this."
    assert desk.order_api.orders[desk.order["id"]]["status"] == "in_progress"


async def test_with_order_api_down_a_button_answers_try_again_and_changes_nothing(
    desk: Desk, database: Database
) -> None:
    await desk.order_api.stop()
    try:
        answer = await desk.press(ANNA, "Take")
        stranger = await desk.press(MALLORY, "Take")  # who they are cannot be asked now
    finally:
        await desk.order_api.start()

    for unanswered in (answer, stranger):
        assert unanswered.text == "order-api is unreachable, try again in a moment."
        assert unanswered.show_alert
    assert desk.card.edits == 0
    assert desk.card.text.startswith("🆕 New order")
    async with database.sessionmaker() as session:
        snapshot = await session.get(OrderSnapshot, desk.order["id"])
    assert snapshot is not None
    assert (snapshot.version, snapshot.order["status"]) == (1, "awaiting_deposit")

    retried = await desk.press(ANNA, "Take")  # and it works once order-api is back
    assert retried.text is not None
    assert retried.text.endswith("is yours: complete, cancel, release or escalate it from the card.")


async def test_with_order_api_frozen_a_press_is_answered_within_the_budget_and_a_retry_is_safe(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    async with open_desk(launch, fake_bot_api, order_api, order_api_budget_seconds=1.0) as desk:
        desk.order_api.freeze()
        started = time.monotonic()
        try:
            answer = await desk.press(ANNA, "Take")
            waited = time.monotonic() - started
        finally:
            desk.order_api.thaw()  # order-api wakes up and takes the order for Anna after all
        assert answer.text == "order-api is slow, try again."
        assert answer.show_alert
        assert waited < 1.0 + 2.0  # the budget, and some room on a busy machine; not Telegram's 15 s

        retried = await desk.press(ANNA, "Take")  # taking an order one holds changes nothing
        assert retried.text is not None
        assert retried.text.endswith("is yours: complete, cancel, release or escalate it from the card.")
        order = desk.order_api.orders[desk.order["id"]]
        assert (order["status"], order["operator_id"]) == ("in_progress", desk.operators["Anna"])


async def test_in_polling_mode_one_press_is_one_trace_across_its_retries(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    async with open_desk(launch, fake_bot_api, order_api, mode="polling") as desk:
        desk.order_api.fail("/take", times=2)
        answer = await desk.press(ANNA, "Take")
        assert answer.text is not None
        assert answer.text.endswith("is yours: complete, cancel, release or escalate it from the card.")
        takes = [c for c in desk.order_api.calls if c.path.endswith("/take")]
        assert len(takes) == 3  # two refused, the third served
        traces = {c.headers["traceparent"].split("-")[1] for c in takes}
        assert len(traces) == 1, traces


async def test_a_button_on_an_outdated_card_is_refused_and_the_card_catches_up(desk: Desk) -> None:
    await desk.press(ANNA, "Take")
    order = desk.order_api.orders[desk.order["id"]]
    order["version"] += 1  # changed behind the card's back (say, through the REST API)
    answer = await desk.press(ANNA, "Complete")

    assert answer.text == "The order changed meanwhile: the card now shows where it stands."
    assert order["status"] == "in_progress"
    assert desk.card.button("Complete").callback_data == f"o:c:{order['id']}:3"


async def test_escalate_asks_for_the_reason_and_escalates_with_the_reply(desk: Desk) -> None:
    await desk.press(ANNA, "Take")
    answer = await desk.press(ANNA, "Escalate")
    prompt = desk.fake.chat_messages(OPERATORS_CHAT_ID)[-1]
    [send_prompt] = [
        c for c in desk.fake.calls_to("sendMessage") if c.params.get("reply_markup", {}).get("force_reply")
    ]

    assert answer.text == "Reply to my message with the reason: support is told once you send it."
    assert prompt.reply_to_message_id == desk.card.message_id
    assert send_prompt.params["reply_markup"]["selective"] is True
    assert f"Escalate order {desk.order['id']}." in prompt.text

    [done] = await desk.say(ANNA, "Customer sent the deposit twice", chat=OPERATORS_CHAT, reply_to=prompt)
    escalate = next(c for c in desk.order_api.calls if c.path.endswith("/escalate"))
    assert escalate.body == {"comment": "Customer sent the deposit twice"}
    assert done.text == f"🆘 Order {desk.order['id'][:8]} is escalated to support."
    assert "🆘 Escalated to support: Customer sent the deposit twice" in desk.card.text
    assert "🆘 Escalate" not in [b.text for b in desk.card.buttons()]


async def test_an_operator_unlinked_in_order_api_is_forgotten_here_too(desk: Desk) -> None:
    desk.order_api.operators[desk.operators["Anna"]]["telegram_user_id"] = None
    answer = await desk.press(ANNA, "Take")
    assert (
        answer.text
        == "Your Telegram account is no longer linked to an operator. Ask an admin for a new link code."
    )

    calls = len(desk.order_api.operator_calls())
    again = await desk.press(ANNA, "Take")
    assert again.text is not None
    assert again.text.startswith("Sorry, this bot works only for the exchange desk's operators.")
    assert len(desk.order_api.operator_calls()) == calls
    assert desk.order_api.lookups() == [ANNA.id]  # asked again once the refusal dropped the cached link


async def test_my_lists_the_orders_i_hold(desk: Desk) -> None:
    [none] = await desk.say(ANNA, "/my")
    await desk.press(ANNA, "Take")
    [mine] = await desk.say(ANNA, "/my")
    assert none.text == "You hold no open orders. Take one from a card in the operators' chat."
    assert mine.text == f"📋 Your open orders (1)\n• 0.05 BTC → USDT · {desk.order['id'][:8]}"


async def test_pool_shows_free_wallets_and_queues(desk: Desk) -> None:
    [pool] = await desk.say(ANNA, "/pool")
    assert pool.text == (
        "🏦 Wallet pool\n"
        "BTC: 3 of 20 free\n"
        "USDT: 0 of 10 free ⚠️ · queue 4 (oldest 12 min)\n"
        "   TRC20 0/5, queue 3 · ERC20 0/5, queue 1"
    )


async def test_a_take_beyond_the_cap_is_answered_with_the_cap_in_the_operators_language(desk: Desk) -> None:
    desk.order_api.max_held_orders = 1
    await desk.press(ANNA, "Take")
    second = desk.order_api.add_order()
    await desk.gateway.post_message(order_message(second, event="order.created"))
    card = desk.fake.chat_messages(OPERATORS_CHAT_ID)[-1]

    refused = await desk.press(ANNA, "Take", card=card)
    in_russian = await desk.press(replace(ANNA, language_code="ru"), "Take", card=card)

    assert (refused.text, refused.show_alert) == (
        "You already hold 1 order — finish or give one back first.",
        True,
    )
    assert in_russian.text == "У вас уже 1 заказ — сначала завершите или верните один."  # noqa: RUF001
    assert card.text.startswith("🆕 New order")
    assert desk.order_api.orders[second["id"]]["operator_id"] is None


async def test_on_and_off_set_the_operators_presence(desk: Desk) -> None:
    await desk.press(ANNA, "Take")
    [away] = await desk.say(ANNA, "/off")
    [back] = await desk.say(ANNA, "/on")

    presence = [c.body for c in desk.order_api.calls if c.path == "/v1/operator/presence"]
    assert presence == [{"status": "away"}, {"status": "available"}]
    assert away.text == (
        "🌙 You are away: you take no new work and still finish the 1 order you hold. /on when you are back."
    )
    assert back.text == "🟢 You are available: you hold 1 order (your cap is 5)."


async def test_support_reassigns_an_escalated_order_from_its_card_by_name(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    sam = TelegramUser(id=403, first_name="Sam")
    async with open_desk(launch, fake_bot_api, order_api) as desk:
        order_api.link(order_api.add_operator("Sam", role="support"), sam)
        await desk.press(ANNA, "Take")
        held = order_api.orders[desk.order["id"]]
        version = held["version"]  # the support card's
        escalated = order_message(held, event="order.escalated", chat="support", note="Paid twice")
        await desk.gateway.post_message(escalated)
        [support_card] = fake_bot_api.chat_messages(SUPPORT_CHAT_ID)

        answer = await desk.press(sam, "Reassign", card=support_card)
        prompt = fake_bot_api.chat_messages(SUPPORT_CHAT_ID)[-1]
        [unknown] = await desk.say(sam, "Zed", chat=SUPPORT_CHAT, reply_to=prompt)
        [done] = await desk.say(sam, "@boris", chat=SUPPORT_CHAT, reply_to=prompt)
        # the same prompt answered again: the order moved on (reassigned), so the card's version is refused
        [stale] = await desk.say(sam, "anna", chat=SUPPORT_CHAT, reply_to=prompt)

    assert answer.text == "Reply to my message with the operator's name."
    assert f"Reassign order {desk.order['id']} at version {version}." in prompt.text
    assert unknown.text == "No active operator has that name."
    reassigned = [c for c in order_api.calls if c.path.endswith("/reassign")]
    assert [c.body for c in reassigned] == [
        {"operator_name": "Zed"},
        {"operator_name": "boris"},
        {"operator_name": "anna"},
    ]
    assert {c.headers.get("If-Match") for c in reassigned} == {str(version)}
    assert "changed" in stale.text
    assert order_api.orders[desk.order["id"]]["operator_name"] == "Boris"  # the stale answer moved nothing
    assert done.text == f"↪️ Order {desk.order['id'][:8]} is now held by Boris."
    assert desk.card.text.startswith("🔧 Taken by Boris")


async def test_every_press_is_answered_even_on_a_button_of_an_unknown_kind(desk: Desk) -> None:
    pressed = await desk.fake.press(ANNA, desk.card, "z:something-old")
    answer = await desk.fake.answer_to(pressed.query_id or "")
    assert answer.text == "This button is no longer valid. The card's current buttons work."
    assert desk.order_api.calls == []
