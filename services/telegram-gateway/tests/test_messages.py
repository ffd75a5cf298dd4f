"""``POST /v1/messages`` (contract B): the notifier's order cards and alerts, against the fake Bot API."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select, text

from servicekit.db import Database
from telegram_gateway.cards.models import PostedMessage
from telegram_gateway.messages.models import MessageDelivery
from telegram_gateway.testing import KEYS, OPERATORS_CHAT_ID, SUPPORT_CHAT_ID, FakeBotApi
from telegram_gateway.testing.harness import Launch, StandInOrderApi, alert_message, order_message

TAKEN: dict[str, Any] = {
    "status": "in_progress",
    "operator_id": "op-anna",
    "operator_name": "Anna",
    "version": 2,
}


async def count(database: Database, model: type[Any]) -> int:
    async with database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_new_order_gets_a_card_with_a_take_button(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    order = order_api.add_order(amount="0.0375", priority="vip")
    async with launch() as gateway:
        response = await gateway.post_message(order_message(order, event="order.created"))

    assert response.status_code == 200, response.text
    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert response.json() == {
        "message_id": response.json()["message_id"],
        "outcome": "posted",
        "telegram_message_ids": [card.message_id],
    }
    assert card.text.startswith("🆕 New order")
    assert "0.0375 BTC (bitcoin) → USDT (TRC20)" in card.text
    assert "Address: bc1qw508…f3t4" in card.text
    assert "Priority: VIP" in card.text
    [take] = card.buttons()
    assert take.text == "🙋 Take"
    assert take.callback_data == f"o:t:{order['id']}:"
    assert len(take.callback_data.encode()) < 64


async def test_a_queued_order_gets_its_own_card_without_a_take_button(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    order = order_api.add_order(status="queued", deposit_address=None, queue_position=3)
    async with launch() as gateway:
        response = await gateway.post_message(order_message(order, event="order.created"))

    assert response.status_code == 200, response.text
    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert card.text.startswith("⏳ Queued · in the queue, no address yet")
    assert "Address" not in card.text
    assert card.buttons() == []


async def test_an_order_whose_address_arrives_later_keeps_its_one_card_edited_to_takeable(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    order = order_api.add_order(status="awaiting_address", deposit_address=None)
    arrived = {"status": "awaiting_deposit", "deposit_address": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"}
    async with launch() as gateway:
        created = await gateway.post_message(order_message(order, event="order.created"))
        again = await gateway.post_message(order_message(order, event="order.created"))  # announced twice
        ready = await gateway.post_message(
            order_message(order, event="order.status_changed", version=2, **arrived)
        )

    assert [r.json()["outcome"] for r in (created, again, ready)] == ["posted", "edited", "edited"]
    assert created.json()["telegram_message_ids"] == again.json()["telegram_message_ids"]
    calls = fake_bot_api.calls_to("sendMessage", "editMessageText")
    assert [call.method for call in calls] == ["sendMessage", "editMessageText"]
    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert card.edits == 1
    assert card.text.startswith("🆕 New order · awaiting the deposit")
    assert "Address: bc1qw508…f3t4" in card.text
    assert [b.text for b in card.buttons()] == ["🙋 Take"]


async def test_a_queued_order_that_gets_its_address_edits_its_card(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    order = order_api.add_order(status="queued", deposit_address=None, queue_position=2)
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(
            order_message(order, event="order.status_changed", version=2, queue_position=1)
        )  # the queue moved: the card says nothing different, so it is not edited
        await gateway.post_message(
            order_message(
                order,
                event="order.status_changed",
                version=3,
                status="awaiting_deposit",
                deposit_address="bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
                queue_position=None,
            )
        )

    assert [call.method for call in fake_bot_api.calls_to("sendMessage", "editMessageText")] == [
        "sendMessage",
        "editMessageText",
    ]
    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert card.text.startswith("🆕 New order · awaiting the deposit")
    assert [b.text for b in card.buttons()] == ["🙋 Take"]


async def test_a_repeated_message_id_posts_nothing_and_answers_duplicate(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi, database: Database
) -> None:
    order, other = order_api.add_order(), order_api.add_order()
    async with launch() as gateway:
        body = order_message(order, event="order.created")
        first = await gateway.post_message(body)
        again = await gateway.post_message(body)
        racing = order_message(other, event="order.created")
        both = await asyncio.gather(gateway.post_message(racing), gateway.post_message(racing))

    assert first.json()["outcome"] == "posted"
    assert again.status_code == 200
    assert again.json() == {**first.json(), "outcome": "duplicate"}
    assert sorted(r.json()["outcome"] for r in both) == ["duplicate", "posted"]
    assert len(fake_bot_api.calls_to("sendMessage")) == 2  # one card per order, whatever the repeats
    assert await count(database, MessageDelivery) == 2


async def test_later_events_edit_the_card_with_the_buttons_of_the_new_state(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        taken = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        assert taken.json()["outcome"] == "edited"
        assert taken.json()["telegram_message_ids"] == [card.message_id]
        assert card.edits == 1
        assert card.text.startswith("🔧 Taken by Anna")
        assert [b.text for b in card.buttons()] == ["✅ Complete", "✖️ Cancel", "↩️ Release", "🆘 Escalate"]
        assert card.button("Complete").callback_data == f"o:c:{order['id']}:2"

        completed = await gateway.post_message(
            order_message(
                order, event="order.status_changed", **{**TAKEN, "status": "completed", "version": 3}
            )
        )
    assert completed.json()["outcome"] == "edited"
    assert card.text.startswith("✅ Completed by Anna")
    assert card.buttons() == []
    assert len(fake_bot_api.chat_messages(OPERATORS_CHAT_ID)) == 1


async def test_an_event_for_an_order_without_a_card_answers_no_card(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as gateway:
        response = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
    assert response.status_code == 200
    assert response.json()["outcome"] == "no_card"
    assert response.json()["telegram_message_ids"] == []
    assert fake_bot_api.calls_to("sendMessage", "editMessageText") == []


async def test_an_older_version_never_shows_over_a_newer_one(
    launch: Launch, fake_bot_api: FakeBotApi, order_api: StandInOrderApi
) -> None:
    order, late = order_api.add_order(), order_api.add_order()
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(
            order_message(
                order, event="order.status_changed", **{**TAKEN, "status": "completed", "version": 3}
            )
        )
        stale = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        # order.taken overtook order.created: the card posted late shows the newer state
        await gateway.post_message(order_message(late, event="order.taken", **TAKEN))
        await gateway.post_message(order_message(late, event="order.created"))

    first, second = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert stale.status_code == 200
    assert first.text.startswith("✅ Completed by Anna")
    assert first.edits == 1  # the late order.taken (version 2) edited nothing
    assert second.text.startswith("🔧 Taken by Anna")
    assert second.button("Complete").callback_data == f"o:c:{late['id']}:2"


async def test_an_order_back_in_the_pool_is_posted_again_and_its_old_card_loses_its_buttons(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        released = await gateway.post_message(order_message(order, event="order.released", version=3))

    old, new = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert released.json() == {
        **released.json(),
        "outcome": "posted",
        "telegram_message_ids": [new.message_id],
    }
    assert new.text.startswith("🔁 Back in the pool")
    assert [b.text for b in new.buttons()] == ["🙋 Take"]
    assert old.buttons() == []
    assert "Posted again below" in old.text


async def test_an_escalation_posts_a_card_to_support_and_flags_the_operators_card(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        escalated = await gateway.post_message(
            order_message(order, event="order.escalated", note="Customer paid twice", **TAKEN)
        )
        [support] = fake_bot_api.chat_messages(SUPPORT_CHAT_ID)
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        assert escalated.json()["outcome"] == "posted"
        assert escalated.json()["telegram_message_ids"] == [support.message_id]
        assert support.text.splitlines()[:2] == [
            f"🆘 Escalated · order {order['id'][:8]}",
            "Customer paid twice",
        ]
        [reassign] = support.buttons()  # support may hand the escalated order to another operator
        assert (reassign.text, reassign.callback_data) == ("↪️ Reassign", f"o:a:{order['id']}:2")
        assert "🆘 Escalated to support: Customer paid twice" in card.text
        assert "🆘 Escalate" not in [b.text for b in card.buttons()]

        resolved = await gateway.post_message(
            order_message(order, event="order.escalation_resolved", note="Refunded", **TAKEN)
        )
    assert resolved.json()["outcome"] == "edited"
    assert sorted(resolved.json()["telegram_message_ids"]) == sorted([card.message_id, support.message_id])
    assert support.text.startswith("☑️ Escalation resolved")
    assert "Resolution: Refunded" in support.text
    assert support.buttons() == []
    assert "Escalated to support" not in card.text
    assert "🆘 Escalate" in [b.text for b in card.buttons()]


async def test_a_reassignment_edits_the_cards_and_tells_both_operators_privately(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    anna, boris = 7001, 7002
    reassigned = {**TAKEN, "operator_id": "op-boris", "operator_name": "Boris <B>", "version": 3}
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        fake_bot_api.refused_chats.add(boris)  # Boris never opened a chat with the bot
        refused = await gateway.post_message(
            {
                **order_message(order, event="order.reassigned", note="Anna is off", **reassigned),
                "reassignment": {
                    "previous_operator_name": "Anna",
                    "previous_telegram_user_id": anna,
                    "telegram_user_id": boris,
                    "actor_role": "support",
                },
            }
        )
        fake_bot_api.refused_chats.discard(boris)
        told = await gateway.post_message(
            {
                **order_message(order, event="order.reassigned", **{**reassigned, "version": 4}),
                "reassignment": {"previous_operator_name": "Anna", "telegram_user_id": boris},
            }
        )

    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert (refused.json()["outcome"], told.json()["outcome"]) == ("edited", "edited")
    assert card.text.startswith("🔧 Taken by Boris <B>")
    [to_anna] = fake_bot_api.chat_messages(anna)
    assert to_anna.text.startswith(f"↪️ Order {order['id'][:8]} (")
    assert "was handed to Boris <B> by support: you no longer hold it." in to_anna.text
    assert to_anna.text.endswith("Anna is off")
    [to_boris] = fake_bot_api.chat_messages(boris)  # the second time round
    assert "is yours now, handed over from Anna by support." in to_boris.text


async def test_an_auto_assignment_edits_the_cards_and_tells_the_operator_with_accept_then_its_lapse(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    anna = 7011
    async with launch(operators_language="ru") as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        assigned = await gateway.post_message(
            {
                **order_message(order, event="order.assigned", **TAKEN),
                "assignment": {"telegram_user_id": anna, "lapses_at": "2026-11-21T12:05:00+00:00"},
            }
        )
        [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
        assert card.text.startswith("🔧 Taken by Anna")
        lapsed = await gateway.post_message(
            {
                **order_message(
                    order,
                    event="order.assignment_lapsed",
                    note="Not accepted within 5 minutes.",
                    version=3,
                ),
                "assignment": {"telegram_user_id": anna},
            }
        )

    assert (assigned.json()["outcome"], lapsed.json()["outcome"]) == ("edited", "posted")
    first, again = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert (first.text.endswith("Posted again below."), first.buttons()) == (True, [])
    assert again.text.startswith("🔁 Back in the pool")
    told, lapse = fake_bot_api.chat_messages(anna)
    assert told.text.startswith(f"📌 Заказ {order['id'][:8]} (")
    assert "назначен вам" in told.text
    assert "21 Nov 12:05 UTC" in told.text
    assert [b.text for b in told.buttons()] == [
        "👍 Accept",
        "✅ Complete",
        "✖️ Cancel",
        "↩️ Release",
        "🆘 Escalate",
    ]
    assert told.buttons()[0].callback_data == f"o:k:{order['id']}:2"
    assert "не принят вовремя" in lapse.text
    assert lapse.text.endswith("Not accepted within 5 minutes.")
    assert lapse.buttons() == []


async def test_alerts_are_posted_escaped_and_support_falls_back_to_the_operators_chat(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    async with launch(support_chat_id=None) as gateway:
        response = await gateway.post_message(
            alert_message(
                chat="support", severity="critical", title="USDT <TRC20> pool is empty", text="0 & 3"
            )
        )
    assert response.status_code == 200, response.text
    [alert] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert response.json()["telegram_message_ids"] == [alert.message_id]
    assert alert.text == "🔴 USDT <TRC20> pool is empty\n0 & 3"
    assert alert.html == "🔴 <b>USDT &lt;TRC20&gt; pool is empty</b>\n0 &amp; 3"


async def test_with_telegram_off_messages_are_409_telegram_disabled(
    launch: Launch, order_api: StandInOrderApi
) -> None:
    async with launch(bot_token=None) as gateway:
        response = await gateway.post_message(order_message(order_api.add_order(), event="order.created"))
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "telegram_disabled"


async def test_with_no_chat_configured_messages_are_409_telegram_disabled(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    async with launch(operators_chat_id=None, support_chat_id=None) as gateway:
        response = await gateway.post_message(alert_message())
    assert response.status_code == 409
    assert response.json()["code"] == "telegram_disabled"
    assert fake_bot_api.calls_to("sendMessage") == []


async def test_a_failing_bot_api_is_503_and_the_retry_posts_the_card_once(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any], database: Database
) -> None:
    body = order_message(order, event="order.created")
    async with launch() as gateway:
        fake_bot_api.fail("sendMessage", status=502)
        failed = await gateway.post_message(body)
        assert failed.status_code == 503
        assert failed.json()["code"] == "telegram_unavailable"
        assert "Retry-After" not in failed.headers
        assert await count(database, MessageDelivery) == 0  # nothing recorded: the retry is not a duplicate

        retried = await gateway.post_message(body)
    assert retried.json()["outcome"] == "posted"
    assert len(fake_bot_api.chat_messages(OPERATORS_CHAT_ID)) == 1


async def test_telegrams_flood_control_is_503_with_its_retry_after(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        fake_bot_api.fail("editMessageText", status=429, retry_after=7)
        response = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
    assert response.status_code == 503
    assert response.json()["code"] == "telegram_unavailable"
    assert response.headers["Retry-After"] == "7"


async def test_an_unreachable_bot_api_is_503(launch: Launch, fake_bot_api: FakeBotApi) -> None:
    async with launch() as gateway:
        await fake_bot_api.stop()
        try:
            response = await gateway.post_message(alert_message())
        finally:
            await fake_bot_api.start()
    assert response.status_code == 503
    assert response.json()["code"] == "telegram_unavailable"


async def test_a_chat_telegram_refuses_is_409_telegram_rejected(
    launch: Launch, fake_bot_api: FakeBotApi
) -> None:
    fake_bot_api.refused_chats.add(OPERATORS_CHAT_ID)
    async with launch() as gateway:
        response = await gateway.post_message(alert_message())
    assert response.status_code == 409
    assert response.json()["code"] == "telegram_rejected"
    assert "chat not found" in response.json()["detail"]


async def test_message_is_not_modified_counts_as_an_edit(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any], database: Database
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
        async with database.engine.begin() as connection:  # the gateway no longer knows what the card shows
            await connection.execute(text("UPDATE posted_message SET rendered_digest = NULL"))
        response = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))

    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert response.status_code == 200
    assert response.json()["outcome"] == "edited"
    assert len(fake_bot_api.calls_to("editMessageText")) == 2  # the second was Telegram's 400 "not modified"
    assert card.edits == 1


async def test_a_card_deleted_in_telegram_is_forgotten(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any], database: Database
) -> None:
    async with launch() as gateway:
        await gateway.post_message(order_message(order, event="order.created"))
        fake_bot_api.delete_message(fake_bot_api.chat_messages(OPERATORS_CHAT_ID)[0])
        response = await gateway.post_message(order_message(order, event="order.taken", **TAKEN))
    assert response.status_code == 200
    assert response.json()["outcome"] == "no_card"
    assert await count(database, PostedMessage) == 0


async def test_edits_reach_the_cards_posted_before_a_restart(
    launch: Launch, fake_bot_api: FakeBotApi, order: dict[str, Any]
) -> None:
    async with launch() as before:
        await before.post_message(order_message(order, event="order.created"))
    async with launch() as after:
        response = await after.post_message(order_message(order, event="order.taken", **TAKEN))

    [card] = fake_bot_api.chat_messages(OPERATORS_CHAT_ID)
    assert response.json() == {
        **response.json(),
        "outcome": "edited",
        "telegram_message_ids": [card.message_id],
    }
    assert card.text.startswith("🔧 Taken by Anna")


async def test_bad_bodies_are_422_naming_the_field(launch: Launch, order: dict[str, Any]) -> None:
    card = order_message(order, event="order.created")
    async with launch() as gateway:
        without_order = await gateway.post_message({**card, "order": None})
        alert_with_order = await gateway.post_message({**alert_message(), "order": card["order"]})
        bad_amount = await gateway.post_message({**card, "order": {**card["order"], "amount": "lots"}})
        unknown_event = await gateway.post_message({**card, "event": "order.exploded"})
        extra_field = await gateway.post_message({**card, "priority": "high"})
        long_note = await gateway.post_message({**card, "note": "x" * 1001})

    for response, field in [
        (without_order, "order"),
        (alert_with_order, "order"),
        (bad_amount, "order.amount"),
        (unknown_event, "event"),
        (extra_field, "priority"),
        (long_note, "note"),
    ]:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_the_notifiers_key_with_its_scope_is_required(launch: Launch, fake_bot_api: FakeBotApi) -> None:
    async with launch() as gateway:
        without = await gateway.post_message(alert_message(), key=None)
        wrong_scope = await gateway.post_message(alert_message(), key=KEYS.other)
    assert without.status_code == 401
    assert wrong_scope.status_code == 403
    assert fake_bot_api.calls_to("sendMessage") == []
