"""What a card says, for a phone: HTML parse mode with every value escaped, amounts exactly as order-api gave
them, a short deposit address, and only the buttons the order's state allows. A queued order's card says it
is in the queue without a position: the position moves whenever an order ahead leaves the queue, which no
event about this order reports, so a number on the card would soon be wrong."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING, Literal

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from telegram_gateway.bot.texts import Language, say
from telegram_gateway.cards.callback_data import OrderAction, OrderCallback
from telegram_gateway.cards.schemas import TERMINAL_STATUSES, OrderView

if TYPE_CHECKING:
    from telegram_gateway.messages.schemas import ReassignmentView

Severity = Literal["warning", "critical", "emergency", "resolved"]
SEVERITY_ICONS: dict[str, str] = {"warning": "⚠️", "critical": "🔴", "emergency": "🚨", "resolved": "✅"}
BACK_IN_POOL_EVENTS = frozenset({"order.released", "order.assignment_timed_out", "order.assignment_lapsed"})
BUTTON_LABELS = {
    OrderAction.TAKE: "🙋 Take",
    OrderAction.COMPLETE: "✅ Complete",
    OrderAction.CANCEL: "✖️ Cancel",
    OrderAction.RELEASE: "↩️ Release",
    OrderAction.ESCALATE: "🆘 Escalate",
    OrderAction.REASSIGN: "↪️ Reassign",
    OrderAction.ACCEPT: "👍 Accept",
}


@dataclass(frozen=True, slots=True)
class Card:
    text: str
    keyboard: InlineKeyboardMarkup | None

    @property
    def digest(self) -> str:
        """Identifies what the card shows: a card whose digest is unchanged is not edited."""
        markup = self.keyboard.model_dump(mode="json", exclude_none=True) if self.keyboard else None
        blob = json.dumps([self.text, markup], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def html(value: object) -> str:
    return escape(str(value), quote=False)


def short_id(order_id: str) -> str:
    return order_id[:8]


def short_address(address: str) -> str:
    """``bc1qw508…f3t4``: enough to recognise an address on a phone, not to copy it."""
    return address if len(address) <= 16 else f"{address[:8]}…{address[-4:]}"


def amount_text(amount: str) -> str:
    """The exact amount in plain notation (``1E-7`` becomes ``0.0000001``; nothing is rounded)."""
    return format(Decimal(amount), "f")


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%d %b %H:%M UTC")


def button(action: OrderAction, view: OrderView) -> InlineKeyboardButton:
    version = None if action is OrderAction.TAKE else view.version
    data = OrderCallback(action=action, order_id=view.order_id, version=version).pack()
    return InlineKeyboardButton(text=BUTTON_LABELS[action], callback_data=data)


def _headline(view: OrderView, *, posted_for: str | None) -> str:
    holder = html(view.operator_name or "an operator")
    if view.status == "awaiting_address":
        return "🕓 <b>New order</b> · preparing its deposit address"
    if view.status == "queued":
        # No position: it changes whenever an order ahead leaves the queue, and no event tells this card.
        return "⏳ <b>Queued</b> · in the queue, no address yet"
    if view.status == "awaiting_deposit" and view.operator_id is None:
        if posted_for in BACK_IN_POOL_EVENTS:
            return "🔁 <b>Back in the pool</b> · awaiting the deposit"
        return "🆕 <b>New order</b> · awaiting the deposit"
    if view.status in ("in_progress", "awaiting_deposit"):
        return f"🔧 <b>Taken by {holder}</b>"
    if view.status == "completed":
        return f"✅ <b>Completed</b> by {holder}" if view.operator_name else "✅ <b>Completed</b>"
    if view.status == "cancelled":
        return f"✖️ <b>Cancelled</b> (held by {holder})" if view.operator_name else "✖️ <b>Cancelled</b>"
    return "⌛ <b>Expired</b>"


def _order_lines(view: OrderView) -> list[str]:
    lines = [
        f"<b>{html(amount_text(view.amount))} {html(view.from_currency)}</b> ({html(view.from_network)})"
        f" → {html(view.to_currency)} ({html(view.to_network)})"
    ]
    if view.deposit_address:
        lines.append(f"Address: <code>{html(short_address(view.deposit_address))}</code>")
    elif view.status == "queued":
        lines.append("Gets an address when one is released.")
    elif view.status == "awaiting_address":
        lines.append("Its address is on the way; Take appears here when it arrives.")
    if view.priority != "normal":
        lines.append(f"Priority: <b>{html(view.priority.upper())}</b>")
    if view.expires_at is not None and view.status not in TERMINAL_STATUSES:
        lines.append(f"Expires {moment(view.expires_at)}")
    return lines


def order_card(
    view: OrderView,
    *,
    escalated: bool,
    escalation_note: str | None,
    posted_for: str | None,
    superseded: bool = False,
) -> Card:
    """The operators' card: headline by state, the order, and the buttons its state allows. A card
    ``superseded`` by a newer card of the same order in the same chat keeps the state but loses its buttons,
    so each chat has one card to act on."""
    lines = [_headline(view, posted_for=posted_for), *_order_lines(view)]
    if escalated:
        reason = f": {html(escalation_note)}" if escalation_note else ""
        lines.append(f"🆘 <b>Escalated to support</b>{reason}")
    lines.append(f"Order <code>{html(short_id(view.order_id))}</code>")
    if superseded:
        lines.append("⬇️ <i>Posted again below.</i>")
    rows: list[list[InlineKeyboardButton]] = []
    if superseded:
        pass
    elif view.status == "awaiting_deposit" and view.operator_id is None:
        rows.append([button(OrderAction.TAKE, view)])
    elif view.status == "in_progress":
        rows.append([button(OrderAction.COMPLETE, view), button(OrderAction.CANCEL, view)])
        second = [button(OrderAction.RELEASE, view)]
        if not escalated:
            second.append(button(OrderAction.ESCALATE, view))
        rows.append(second)
    return Card(text="\n".join(lines), keyboard=InlineKeyboardMarkup(inline_keyboard=rows) if rows else None)


def escalation_card(
    view: OrderView, *, escalated: bool, escalation_note: str | None, resolution_note: str | None
) -> Card:
    """Support's card for an escalated order: why, the order's state, and how it was resolved."""
    if escalated:
        lines = [f"🆘 <b>Escalated</b> · order <code>{html(short_id(view.order_id))}</code>"]
    else:
        lines = [f"☑️ <b>Escalation resolved</b> · order <code>{html(short_id(view.order_id))}</code>"]
    if escalation_note:
        lines.append(f"<i>{html(escalation_note)}</i>")
    if not escalated and resolution_note:
        lines.append(f"Resolution: {html(resolution_note)}")
    lines.append(_headline(view, posted_for=None))
    lines.extend(_order_lines(view))
    keyboard = None
    if escalated and view.status == "in_progress":  # support may hand it to another operator
        keyboard = InlineKeyboardMarkup(inline_keyboard=[[button(OrderAction.REASSIGN, view)]])
    return Card(text="\n".join(lines), keyboard=keyboard)


def reassignment_texts(
    view: OrderView, *, reassignment: ReassignmentView, note: str | None
) -> list[tuple[int, str]]:
    """What each operator of a reassignment is told privately: ``(telegram user id, text)``."""
    order = f"<code>{html(short_id(view.order_id))}</code>"
    what = f"{html(amount_text(view.amount))} {html(view.from_currency)} → {html(view.to_currency)}"
    by = html(reassignment.actor_role or "support")
    why = f"\n<i>{html(note)}</i>" if note else ""
    texts: list[tuple[int, str]] = []
    if reassignment.previous_telegram_user_id is not None:
        texts.append(
            (
                reassignment.previous_telegram_user_id,
                f"↪️ Order {order} ({what}) was handed to <b>{html(view.operator_name or 'another operator')}"
                f"</b> by {by}: you no longer hold it.{why}",
            )
        )
    if reassignment.telegram_user_id is not None:
        previous = html(reassignment.previous_operator_name or "another operator")
        texts.append(
            (
                reassignment.telegram_user_id,
                f"↪️ Order {order} ({what}) is yours now, handed over from <b>{previous}</b> by {by}. "
                f"/my lists your orders.{why}",
            )
        )
    return texts


def assignment_message(
    view: OrderView, *, event: str, lapses_at: datetime | None, note: str | None, language: Language
) -> Card:
    """What the operator an order was auto-assigned to is told privately (with the card's buttons and Accept),
    or, when it lapsed, that it is back in the pool."""
    order = f"<code>{html(short_id(view.order_id))}</code>"
    what = f"{html(amount_text(view.amount))} {html(view.from_currency)} → {html(view.to_currency)}"
    if event == "order.assignment_lapsed":
        why = f"\n<i>{html(note)}</i>" if note else ""
        return Card(text=say("assignment_lapsed", language, order=order, what=what) + why, keyboard=None)
    until = moment(lapses_at) if lapses_at is not None else "?"
    text = say("assigned_to_you", language, order=order, what=what, until=until)
    rows = [[button(OrderAction.ACCEPT, view)]]
    if view.status == "in_progress":
        rows += [
            [button(OrderAction.COMPLETE, view), button(OrderAction.CANCEL, view)],
            [button(OrderAction.RELEASE, view), button(OrderAction.ESCALATE, view)],
        ]
    return Card(text=text, keyboard=InlineKeyboardMarkup(inline_keyboard=rows))


def alert_text(*, severity: str, title: str, text: str) -> str:
    icon = SEVERITY_ICONS.get(severity, "⚠️")
    return f"{icon} <b>{html(title)}</b>\n{html(text)}"
