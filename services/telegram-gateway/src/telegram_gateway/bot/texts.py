"""The bot's words about an operator's workload, in the desk's languages (English and Russian), picked by
the Telegram user's own language (``language_code``): presence (``/on``, ``/off``), the cap on held orders,
support's reassignment, auto-assignment, and completing an order with its transaction record.

A question of the Complete flow ends with ``Complete order <id>.`` in every language: the bot finds the order
a reply is about by that line."""

# ruff: noqa: RUF001 (Russian text)
from __future__ import annotations

from typing import Literal

from aiogram.types import User

from servicekit.plurals import counted

Language = Literal["en", "ru"]
ORDERS = {"en": ("order", "orders"), "ru": ("заказ", "заказа", "заказов")}
TEXTS: dict[str, dict[Language, str]] = {
    "available": {
        "en": "🟢 You are <b>available</b>: you hold {held} (your cap is {cap}).",
        "ru": "🟢 Вы <b>на месте</b>: у вас {held} (ваш предел — {cap}).",
    },
    "away": {
        "en": "🌙 You are <b>away</b>: you take no new work and still finish the {held} you hold. "
        "/on when you are back.",
        "ru": "🌙 Вы <b>отошли</b>: новых заказов не берёте, а взятые ({held}) ведёте как прежде. "
        "/on — когда вернётесь.",
    },
    "at_capacity": {
        "en": "You already hold {held} — finish or give one back first.",
        "ru": "У вас уже {held} — сначала завершите или верните один.",
    },
    "reassign_prompt": {
        "en": "↪️ {mention}, reply to this message with the name of the operator who should hold it.\n"
        "Reassign order {order_id}.",
        "ru": "↪️ {mention}, ответьте на это сообщение именем оператора, которому передать заказ.\n"
        "Reassign order {order_id}.",
    },
    "reassign_asked": {
        "en": "Reply to my message with the operator's name.",
        "ru": "Ответьте на моё сообщение именем оператора.",
    },
    "assigned_to_you": {
        "en": "📌 Order {order} ({what}) is <b>assigned to you</b>. Accept it, or act on it, by {until}, or it "
        "goes back to the pool. /my lists your orders.",
        "ru": "📌 Заказ {order} ({what}) <b>назначен вам</b>. Примите его или начните работу до {until}, иначе "
        "он вернётся в общий список. /my — ваши заказы.",
    },
    "assignment_lapsed": {
        "en": "🔁 Order {order} ({what}) was assigned to you and not accepted in time: it is back in the pool.",
        "ru": "🔁 Заказ {order} ({what}) был назначен вам, но не принят вовремя: он вернулся в общий список.",
    },
    "accepted": {
        "en": "Order {order} is yours: it stays with you.",
        "ru": "Заказ {order} ваш: он остаётся за вами.",
    },
    "reassigned": {
        "en": "↪️ Order <code>{order}</code> is now held by <b>{name}</b>.",
        "ru": "↪️ Заказ <code>{order}</code> передан: теперь его ведёт <b>{name}</b>.",
    },
    "completion_started": {
        "en": "📝 Completing order <code>{order}</code>: answer my questions as replies. /cancel stops.",
        "ru": "📝 Завершение заказа <code>{order}</code>: отвечайте на мои вопросы ответом на сообщение. "
        "/cancel — отменить.",
    },
    "completion_asked": {
        "en": "Reply to my questions with the transaction record.",
        "ru": "Ответьте на мои вопросы данными транзакции.",
    },
    "ask_deposit_tx": {
        "en": "reply with the <b>deposit transaction hash</b> ({currency}, {network}).",
        "ru": "пришлите <b>хеш транзакции депозита</b> ({currency}, {network}).",
    },
    "ask_received": {
        "en": "reply with the <b>amount received</b> in {currency}. Ordered: <b>{ordered} {currency}</b> "
        "(send <code>=</code> if exactly that arrived).",
        "ru": "пришлите <b>полученную сумму</b> в {currency}. В заказе: <b>{ordered} {currency}</b> "
        "(пришлите <code>=</code>, если пришло ровно столько).",
    },
    "ask_payout_tx": {
        "en": "reply with the <b>payout transaction hash</b> ({currency}, {network}).",
        "ru": "пришлите <b>хеш транзакции выплаты</b> ({currency}, {network}).",
    },
    "ask_sent": {
        "en": "reply with the <b>amount sent</b> in {currency}.",
        "ru": "пришлите <b>отправленную сумму</b> в {currency}.",
    },
    "ask_fee": {
        "en": "reply with the payout's <b>network fee</b> in {currency} (<code>-</code> if unknown).",
        "ru": "пришлите <b>комиссию сети</b> за выплату в {currency} (<code>-</code>, если неизвестна).",
    },
    "answer_not_hash": {
        "en": "That does not look like a transaction hash.",
        "ru": "Это не похоже на хеш транзакции.",
    },
    "answer_not_amount": {
        "en": "That is not an amount: send a number greater than zero, like 0.05.",
        "ru": "Это не сумма: пришлите число больше нуля, например 0.05.",
    },
    "answer_refused": {
        "en": "order-api did not accept the {what}: {reason}",
        "ru": "order-api не принял {what}: {reason}",
    },
    "label_deposit_tx": {"en": "deposit transaction hash", "ru": "хеш транзакции депозита"},
    "label_received": {"en": "amount received", "ru": "полученную сумму"},
    "label_payout_tx": {"en": "payout transaction hash", "ru": "хеш транзакции выплаты"},
    "label_sent": {"en": "amount sent", "ru": "отправленную сумму"},
    "label_fee": {"en": "network fee", "ru": "комиссию сети"},
    "record_required": {
        "en": "This desk requires the transaction record, so it cannot be skipped.",
        "ru": "На этом столе запись транзакции обязательна, пропустить её нельзя.",
    },
    "skip_too_late": {
        "en": "Skip is possible only before the first answer.",
        "ru": "Пропустить можно только до первого ответа.",
    },
    "completed_with_record": {
        "en": "✅ Order <code>{order}</code> is completed: received {received}, sent {sent}.",
        "ru": "✅ Заказ <code>{order}</code> завершён: получено {received}, отправлено {sent}.",
    },
    "completed_without_record": {
        "en": "✅ Order <code>{order}</code> is completed (no transaction record).",
        "ru": "✅ Заказ <code>{order}</code> завершён (без записи транзакции).",
    },
    "payment_mismatch": {
        "en": "⚖️ Order <code>{order}</code> is <b>{difference}</b>: ordered <b>{ordered}</b>, received "
        "<b>{received}</b>. Complete it with the payout adjusted to what arrived, or hold it for support?",
        "ru": "⚖️ По заказу <code>{order}</code> <b>{difference}</b>: заказано <b>{ordered}</b>, получено "
        "<b>{received}</b>. Завершить с выплатой по полученной сумме или передать в поддержку?",
    },
    "underpaid": {"en": "underpaid", "ru": "недоплата"},
    "overpaid": {"en": "overpaid", "ru": "переплата"},
    "button_skip": {"en": "⏭ Skip record", "ru": "⏭ Без записи"},
    "button_cancel": {"en": "✖️ Cancel", "ru": "✖️ Отмена"},
    "button_adjusted": {"en": "✅ Complete with adjusted payout", "ru": "✅ Завершить с выплатой по факту"},
    "button_hold": {"en": "🆘 Hold for support", "ru": "🆘 В поддержку"},
    "already_with_support": {
        "en": "🆘 Order <code>{order}</code> is already with support (an open escalation), so it cannot be held "
        "again. Your answers are kept: complete it with the adjusted payout once support agrees, or cancel.",
        "ru": "🆘 Заказ <code>{order}</code> уже в поддержке (открытая эскалация), повторно передать нельзя. "
        "Ответы сохранены: завершите с скорректированной выплатой, когда поддержка согласует, или отмените.",
    },
    "deposit_on_record": {
        "en": "The deposit recorded with the hold is used: received {received}.",
        "ru": "Используется депозит, записанный при передаче в поддержку: получено {received}.",
    },
    "held_for_support": {
        "en": "🆘 Order <code>{order}</code> is held for support ({difference}); the deposit is recorded.",
        "ru": "🆘 Заказ <code>{order}</code> передан в поддержку ({difference}); депозит записан.",
    },
    "held_note": {
        "en": "{difference}: ordered {ordered}, received {received}",
        "ru": "{difference}: заказано {ordered}, получено {received}",
    },
    "completion_cancelled": {
        "en": "Completion of order <code>{order}</code> cancelled; the order is unchanged.",
        "ru": "Завершение заказа <code>{order}</code> отменено; заказ не изменился.",
    },
    "nothing_to_cancel": {
        "en": "Nothing to cancel: you are not completing an order.",
        "ru": "Отменять нечего: вы сейчас не завершаете заказ.",
    },
    "completion_expired": {
        "en": "This completion waited too long and was dropped: press Complete on the card again.",
        "ru": "Завершение ждало слишком долго и сброшено: нажмите «Complete» на карточке ещё раз.",
    },
    "completion_closed": {
        "en": "This completion is no longer open.",
        "ru": "Это завершение уже закрыто.",
    },
    "reply_to_latest": {
        "en": "Reply to my latest question about this order.",
        "ru": "Ответьте на мой последний вопрос об этом заказе.",
    },
}


def language_of(user: User | None) -> Language:
    """Russian for a Telegram user whose app speaks it, English otherwise."""
    code = (user.language_code or "") if user is not None else ""
    return "ru" if code.lower().startswith("ru") else "en"


def orders_count(count: int, language: Language) -> str:
    """``5 orders``, ``5 заказов``."""
    return counted(count, ORDERS[language], language=language)


def say(key: str, language: Language, **values: object) -> str:
    return TEXTS[key][language].format(**values)
