"""The bot's words about an operator's workload, in the desk's languages (English and Russian), picked by
the Telegram user's own language (``language_code``): presence (``/on``, ``/off``), the cap on held orders,
support's reassignment and auto-assignment."""

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
