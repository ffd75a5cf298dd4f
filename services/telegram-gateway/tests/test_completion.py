"""Complete, with the transaction record: the bot asks for it as replies (each question names the order), and
order-api (a stand-in keeping the transaction contract's rules) decides what it accepts."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from servicekit.db import Database, utcnow
from telegram_gateway.completions import service
from telegram_gateway.completions.models import CompletionDraft
from telegram_gateway.completions.service import Step
from telegram_gateway.testing import OPERATORS_CHAT, OPERATORS_CHAT_ID, ChatMessage, FakeBotApi, TelegramUser
from telegram_gateway.testing.harness import ANNA, BORIS, Desk, Launch, StandInOrderApi, open_desk

DEPOSIT_TX = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"  # bitcoin: 64 hex
PAYOUT_TX = "7c2b9f0d1e3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"  # TRC20: 64 hex


def question(desk: Desk) -> ChatMessage:
    """The bot's latest message in the operators' chat (the question awaiting a reply)."""
    return desk.fake.chat_messages(OPERATORS_CHAT_ID)[-1]


async def reply(
    desk: Desk, text: str, *, user: TelegramUser = ANNA, to: ChatMessage | None = None
) -> list[str]:
    """``user`` answers the latest question (or ``to``); what the bot said back."""
    said = await desk.say(user, text, chat=OPERATORS_CHAT, reply_to=to or question(desk))
    return [m.text for m in said]


async def start(desk: Desk, *, user: TelegramUser = ANNA) -> str | None:
    await desk.press(user, "Take")
    desk.order_api.calls.clear()
    return (await desk.press(user, "Complete")).text


def completions(desk: Desk) -> list[dict[str, Any]]:
    return [c.body for c in desk.order_api.calls if c.path.endswith("/status")]


async def test_the_operator_answers_each_question_and_the_order_completes_with_its_record(desk: Desk) -> None:
    order_id, short = desk.order["id"], desk.order["id"][:8]
    answer = await start(desk)
    started, first = desk.fake.chat_messages(OPERATORS_CHAT_ID)[-2:]
    asked = [first.text]
    for text in (DEPOSIT_TX, "=", PAYOUT_TX, "1520.40"):
        await reply(desk, text)
        asked.append(question(desk).text)
    [done] = await reply(desk, "1.2")

    assert answer == "Reply to my questions with the transaction record."
    assert [b.text for b in started.buttons()] == ["⏭ Skip record", "✖️ Cancel"]
    assert first.reply_markup == {
        "force_reply": True,
        "selective": True,
        "input_field_placeholder": "deposit transaction hash",
    }
    assert [line.split(", ", 1)[1] for line in asked] == [
        f"reply with the deposit transaction hash (BTC, bitcoin).\nComplete order {order_id}.",
        "reply with the amount received in BTC. Ordered: 0.05 BTC (send = if exactly that arrived).\n"
        f"Complete order {order_id}.",
        f"reply with the payout transaction hash (USDT, TRC20).\nComplete order {order_id}.",
        f"reply with the amount sent in USDT.\nComplete order {order_id}.",
        f"reply with the payout's network fee in USDT (- if unknown).\nComplete order {order_id}.",
    ]
    [complete] = [c for c in desk.order_api.calls if c.path.endswith("/status")]
    assert complete.headers["If-Match"] == "2"
    assert complete.body == {
        "status": "completed",
        "transaction": {
            "deposit": {"tx_hash": DEPOSIT_TX, "amount": "0.05"},
            "payout": {"tx_hash": PAYOUT_TX, "amount": "1520.40", "network_fee": "1.2"},
        },
    }
    assert done == f"✅ Order {short} is completed: received 0.05 BTC, sent 1520.40 USDT."
    assert desk.card.text.startswith("✅ Completed by Anna")
    assert desk.card.buttons() == []


async def test_where_the_desk_allows_it_skip_record_completes_without_one(desk: Desk) -> None:
    desk.order_api.transaction_required = False
    await start(desk)
    started = desk.fake.chat_messages(OPERATORS_CHAT_ID)[-2]
    skipped = await desk.press(ANNA, "Skip record", card=started)

    assert skipped.text is None
    assert completions(desk) == [{"status": "completed"}]
    assert question(desk).text == f"✅ Order {desk.order['id'][:8]} is completed (no transaction record)."
    assert desk.card.text.startswith("✅ Completed by Anna")


async def test_a_refused_skip_or_answer_is_said_and_asked_again(desk: Desk) -> None:
    await start(desk)
    started = desk.fake.chat_messages(OPERATORS_CHAT_ID)[-2]
    await desk.press(ANNA, "Skip record", card=started)  # this desk requires the record
    required = question(desk).text
    [not_a_hash] = await reply(desk, "paid")
    for text in (DEPOSIT_TX, "0.05", "z" * 64, "1520.4"):  # a payout hash of no TRC20 shape
        await reply(desk, text)
    [refused] = await reply(desk, "-")
    too_late = await desk.press(ANNA, "Skip record", card=started)
    [done] = await reply(desk, PAYOUT_TX)

    assert required.startswith("⚠️ This desk requires the transaction record, so it cannot be skipped.\n")
    assert "reply with the deposit transaction hash" in required
    assert not_a_hash.startswith("⚠️ That does not look like a transaction hash.\n")
    assert refused.startswith(
        "⚠️ order-api did not accept the payout transaction hash: Not a TRC20 transaction hash.\n"
    )
    assert "reply with the payout transaction hash (USDT, TRC20)." in refused
    assert too_late.text == "Skip is possible only before the first answer."
    assert [body.get("transaction", {}).get("payout") for body in completions(desk)] == [
        None,
        {"tx_hash": "z" * 64, "amount": "1520.4", "network_fee": None},
        {"tx_hash": PAYOUT_TX, "amount": "1520.4", "network_fee": None},  # the other answers kept
    ]
    assert done.startswith("✅ Order")
    assert desk.order_api.orders[desk.order["id"]]["status"] == "completed"


async def answer_all(desk: Desk, received: str) -> ChatMessage:
    await start(desk)
    for text in (DEPOSIT_TX, received, PAYOUT_TX, "1200", "-"):
        await reply(desk, text)
    return question(desk)


async def test_underpaid_completes_with_the_payout_adjusted_when_the_operator_chooses_so(desk: Desk) -> None:
    mismatch = await answer_all(desk, "0.04")
    await desk.press(ANNA, "adjusted payout", card=mismatch)

    assert mismatch.text == (
        f"⚖️ Order {desk.order['id'][:8]} is underpaid: ordered 0.05 BTC, received 0.04 BTC. Complete it with "
        "the payout adjusted to what arrived, or hold it for support?"
    )
    assert [b.text for b in mismatch.buttons()] == [
        "✅ Complete with adjusted payout",
        "🆘 Hold for support",
        "✖️ Cancel",
    ]
    first, adjusted = completions(desk)
    assert "payment_difference" not in first["transaction"]
    assert adjusted["transaction"]["payment_difference"] == "adjusted_payout"
    recorded = desk.order_api.orders[desk.order["id"]]
    assert (recorded["status"], recorded["transaction"]["payment"]) == ("completed", "underpaid")
    assert question(desk).text.endswith("is completed: received 0.04 BTC, sent 1200 USDT.")


async def test_overpaid_is_held_for_support_with_the_reason_and_the_deposit(desk: Desk) -> None:
    mismatch = await answer_all(desk, "0.06")
    await desk.press(ANNA, "Hold for support", card=mismatch)

    [escalate] = [c.body for c in desk.order_api.calls if c.path.endswith("/escalate")]
    assert escalate == {
        "comment": "Overpaid: ordered 0.05 BTC, received 0.06 BTC",
        "reason": "overpaid",
        "deposit": {"tx_hash": DEPOSIT_TX, "amount": "0.06"},
    }
    assert question(desk).text == (
        f"🆘 Order {desk.order['id'][:8]} is held for support (overpaid); the deposit is recorded."
    )
    assert desk.order_api.orders[desk.order["id"]]["status"] == "in_progress"
    assert "🆘 Escalated to support: Overpaid: ordered 0.05 BTC, received 0.06 BTC" in desk.card.text
    late = await desk.press(ANNA, "adjusted payout", card=mismatch)
    assert late.text == "This completion is no longer open."


async def test_only_the_operator_who_pressed_moves_the_completion_until_cancelled(desk: Desk) -> None:
    await start(desk)
    first = question(desk)
    from_boris = await reply(desk, DEPOSIT_TX, user=BORIS)
    await reply(desk, DEPOSIT_TX)
    [to_old_question] = await reply(desk, "=", to=first)
    [cancelled] = await reply(desk, "/cancel")
    after_cancel = await reply(desk, "=")
    [nothing] = await desk.say(ANNA, "/cancel")

    assert from_boris == []
    assert to_old_question == "Reply to my latest question about this order."
    assert cancelled == f"Completion of order {desk.order['id'][:8]} cancelled; the order is unchanged."
    assert after_cancel == []
    assert nothing.text == "Nothing to cancel: you are not completing an order."
    assert completions(desk) == []
    assert desk.order_api.orders[desk.order["id"]]["status"] == "in_progress"


async def test_a_reply_after_the_draft_expired_completes_nothing(desk: Desk, database: Database) -> None:
    await start(desk, user=replace(ANNA, language_code="ru"))
    russian = question(desk).text
    async with database.sessionmaker.begin() as session:
        await session.execute(update(CompletionDraft).values(expires_at=utcnow() - timedelta(seconds=1)))
    [expired] = await reply(desk, DEPOSIT_TX)
    gone = await reply(desk, "=")

    assert "пришлите хеш транзакции депозита (BTC, bitcoin)." in russian
    assert expired == "This completion waited too long and was dropped: press Complete on the card again."
    assert gone == []
    assert completions(desk) == []


async def test_another_replica_takes_the_next_answer(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    """The draft is in the database: a gateway that did not ask (a restart, another replica) goes on."""
    async with open_desk(launch, fake_bot_api, order_api) as desk:
        await start(desk)
        await reply(desk, DEPOSIT_TX)
    async with launch():
        for text in ("=", PAYOUT_TX, "1520.4"):
            await reply(desk, text)
        [done] = await reply(desk, "-")

    assert done.endswith("is completed: received 0.05 BTC, sent 1520.4 USDT.")
    assert order_api.orders[desk.order["id"]]["transaction"]["deposit"] == {
        "tx_hash": DEPOSIT_TX,
        "amount": "0.05",
    }


def test_a_padded_base64url_hash_is_a_hash_shape() -> None:
    ton = "A" * 42 + "_-" + "="  # TON's base64url hash, 44 characters with its padding
    assert service.parse_answer(Step.DEPOSIT_TX, ton, ordered="1") == ton


async def test_hold_on_an_order_already_with_support_keeps_the_answers(desk: Desk) -> None:
    mismatch = await answer_all(desk, "0.06")
    desk.order_api.orders[desk.order["id"]]["escalated"] = True  # escalated meanwhile (from the card)
    await desk.press(ANNA, "Hold for support", card=mismatch)

    assert question(desk).text == (
        f"🆘 Order {desk.order['id'][:8]} is already with support (an open escalation), so it cannot be held "
        "again. Your answers are kept: complete it with the adjusted payout once support agrees, or cancel."
    )
    await desk.press(ANNA, "adjusted payout", card=mismatch)
    *_, adjusted = completions(desk)
    assert adjusted["transaction"]["deposit"] == {"tx_hash": DEPOSIT_TX, "amount": "0.06"}
    assert desk.order_api.orders[desk.order["id"]]["status"] == "completed"


async def test_after_a_hold_the_completion_reuses_the_recorded_deposit(desk: Desk) -> None:
    mismatch = await answer_all(desk, "0.06")
    await desk.press(ANNA, "Hold for support", card=mismatch)
    held = desk.order_api.orders[desk.order["id"]]
    recorded = held["transaction"]["deposit"]

    desk.order_api.calls.clear()
    await desk.press(ANNA, "Complete")
    asked = question(desk).text
    for text in (PAYOUT_TX, "1200", "-"):
        await reply(desk, text)
    await desk.press(ANNA, "adjusted payout", card=question(desk))

    assert asked.startswith("⚠️ The deposit recorded with the hold is used: received 0.06 BTC.\n")
    assert "reply with the payout transaction hash" in asked
    first, adjusted = completions(desk)
    assert "deposit" not in first["transaction"]
    assert "deposit" not in adjusted["transaction"]
    assert (held["status"], held["transaction"]["deposit"], held["transaction"]["payment"]) == (
        "completed",
        recorded,
        "overpaid",
    )
    assert question(desk).text.endswith("is completed: received 0.06 BTC, sent 1200 USDT.")
