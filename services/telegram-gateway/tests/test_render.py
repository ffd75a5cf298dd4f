"""What a card says and what its buttons send: readable on a phone, exact amounts, escaped text, and callback
data that always fits Telegram's 64 bytes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from telegram_gateway.cards.callback_data import OrderAction, OrderCallback
from telegram_gateway.cards.render import alert_text, escalation_card, order_card, short_address
from telegram_gateway.cards.schemas import OrderView
from telegram_gateway.testing import html_to_text

LONGEST_ID = "ffffffff-ffff-ffff-ffff-ffffffffffff"


def view(**changes: object) -> OrderView:
    fields: dict[str, object] = {
        "order_id": LONGEST_ID,
        "status": "awaiting_deposit",
        "from_currency": "USDT",
        "from_network": "TRC20",
        "to_currency": "BTC",
        "to_network": "bitcoin",
        "amount": "1250.000000",
        "priority": "normal",
        "deposit_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
        "queue_position": None,
        "expires_at": datetime(2026, 11, 21, 13, 5, tzinfo=UTC),
        "operator_id": None,
        "operator_name": None,
        "version": 1,
        **changes,
    }
    return OrderView.model_validate(fields)


@pytest.mark.parametrize("action", list(OrderAction))
def test_callback_data_fits_64_bytes_for_the_longest_order_id_and_version(action: OrderAction) -> None:
    data = OrderCallback(action=action, order_id=LONGEST_ID, version=2**31 - 1).pack()
    assert len(data.encode()) < 64
    assert OrderCallback.unpack(data) == OrderCallback(action=action, order_id=LONGEST_ID, version=2**31 - 1)


def test_every_button_of_every_state_carries_callback_data_under_64_bytes() -> None:
    cards = [
        order_card(view(), escalated=False, escalation_note=None, posted_for="order.created"),
        order_card(
            view(status="in_progress", operator_id="op", operator_name="Anna", version=2**31 - 1),
            escalated=False,
            escalation_note=None,
            posted_for="order.created",
        ),
    ]
    buttons = [b for card in cards if card.keyboard for row in card.keyboard.inline_keyboard for b in row]
    assert [b.text for b in buttons] == ["🙋 Take", "✅ Complete", "✖️ Cancel", "↩️ Release", "🆘 Escalate"]
    assert all(b.callback_data and len(b.callback_data.encode()) < 64 for b in buttons)
    assert buttons[0].callback_data == f"o:t:{LONGEST_ID}:"


def test_a_card_shows_the_amount_as_given_and_a_short_address() -> None:
    card = order_card(view(), escalated=False, escalation_note=None, posted_for="order.created")
    text = html_to_text(card.text)
    assert "1250.000000 USDT (TRC20) → BTC (bitcoin)" in text  # exactly as order-api gave it
    assert "Address: TR7NHqje…Lj6t" in text
    assert "Expires 21 Nov 13:05 UTC" in text
    assert text.startswith("🆕 New order")


def test_tiny_amounts_are_written_out_not_in_exponent_form() -> None:
    card = order_card(view(amount="1E-8"), escalated=False, escalation_note=None, posted_for="order.created")
    assert "0.00000001 USDT" in html_to_text(card.text)


def test_short_addresses_keep_the_start_and_the_end() -> None:
    assert short_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4") == "bc1qw508…f3t4"
    assert short_address("0xABCDEF") == "0xABCDEF"


def test_names_and_notes_are_escaped_for_telegrams_html() -> None:
    card = order_card(
        view(status="in_progress", operator_id="op", operator_name="<b>Eve</b> & Co"),
        escalated=True,
        escalation_note="amount < expected & address > 1",
        posted_for="order.created",
    )
    text = html_to_text(card.text)  # the fake parses as Telegram does: raw < or & would be refused
    assert "Taken by <b>Eve</b> & Co" in text
    assert "Escalated to support: amount < expected & address > 1" in text
    assert card.keyboard is not None
    assert "🆘 Escalate" not in [b.text for row in card.keyboard.inline_keyboard for b in row]


def test_a_queued_order_has_no_address_no_button_and_no_position_to_go_stale() -> None:
    card = order_card(
        view(status="queued", deposit_address=None, queue_position=4),
        escalated=False,
        escalation_note=None,
        posted_for="order.created",
    )
    text = html_to_text(card.text)
    assert text.startswith("⏳ Queued · in the queue, no address yet")
    assert "4" not in text.splitlines()[0]
    assert "position" not in text
    assert card.keyboard is None


def test_an_order_awaiting_its_address_is_new_without_a_take_button() -> None:
    card = order_card(
        view(status="awaiting_address", deposit_address=None, queue_position=None),
        escalated=False,
        escalation_note=None,
        posted_for="order.created",
    )
    text = html_to_text(card.text)
    assert text.startswith("🕓 New order · preparing its deposit address")
    assert "Take appears here when it arrives." in text
    assert "Address:" not in text
    assert "None" not in text
    assert card.keyboard is None


def test_closed_orders_say_who_closed_them_and_offer_nothing() -> None:
    done = order_card(
        view(status="completed", operator_id="op", operator_name="Anna"),
        escalated=False,
        escalation_note=None,
        posted_for="order.created",
    )
    assert html_to_text(done.text).startswith("✅ Completed by Anna")
    assert "Expires" not in done.text
    assert done.keyboard is None


def test_support_sees_why_and_how_an_escalation_ended() -> None:
    open_card = escalation_card(
        view(status="in_progress", operator_id="op", operator_name="Anna"),
        escalated=True,
        escalation_note="Paid twice",
        resolution_note=None,
    )
    resolved = escalation_card(
        view(status="in_progress", operator_id="op", operator_name="Anna"),
        escalated=False,
        escalation_note="Paid twice",
        resolution_note="Refunded the second payment",
    )
    assert html_to_text(open_card.text).splitlines()[:2] == ["🆘 Escalated · order ffffffff", "Paid twice"]
    assert "Resolution: Refunded the second payment" in html_to_text(resolved.text)
    assert open_card.keyboard is not None  # support may hand the held order to another operator
    [[reassign]] = open_card.keyboard.inline_keyboard
    assert reassign.text == "↪️ Reassign"
    assert resolved.keyboard is None
    closed = escalation_card(
        view(status="completed", operator_id="op", operator_name="Anna"),
        escalated=True,
        escalation_note="Paid twice",
        resolution_note=None,
    )
    assert closed.keyboard is None


def test_alert_text_is_escaped() -> None:
    text = alert_text(severity="critical", title="USDT <TRC20> pool empty", text="0 of 5 free & 3 queued")
    assert html_to_text(text) == "🔴 USDT <TRC20> pool empty\n0 of 5 free & 3 queued"
