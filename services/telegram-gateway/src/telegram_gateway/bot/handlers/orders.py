"""The buttons of an order card (Take, Cancel, Release, Escalate, Reassign; Accept on the private message of
an order auto-assigned to the operator) and the replies that give an escalation its reason and a reassignment
its operator, acting on order-api for the operator who pressed (Complete, which asks for the transaction
record, is ``completion``'s).

Every press is answered (no spinning button): with what happened, who holds the order when someone else
won, or "try again" when order-api is unreachable or slow (no answer within ``order_api_budget_seconds``), in
which case nothing changes. What order-api answers
is shown on every card of the order at once (``cards.service.show_order_state``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiogram import Bot, Router
from aiogram.types import CallbackQuery, ForceReply, Message, ReplyParameters

from desk_contracts.errors import ErrorCode
from servicekit.db import Database
from servicekit.errors import DomainError, PeerUnavailableError
from telegram_gateway.bot.handlers.access import LinkedOnly, unavailable
from telegram_gateway.bot.texts import Language, language_of, orders_count, say
from telegram_gateway.cards.callback_data import OrderAction, OrderCallback
from telegram_gateway.cards.render import html, short_id
from telegram_gateway.cards.service import EscalationChange, show_order_state
from telegram_gateway.clients.order_api import LinkedOperator, OperatorOrder, OrderApiClient, held_by_name
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.operators.service import OperatorLinks

log = logging.getLogger("telegram_gateway.bot")

ESCALATION_PROMPT = re.compile(r"Escalate order (?P<order_id>[A-Za-z0-9-]{1,36})\b")
REASSIGN_PROMPT = re.compile(
    r"Reassign order (?P<order_id>[A-Za-z0-9-]{1,36})(?: at version (?P<version>\d{1,9}))?\b"
)
MAX_OPERATOR_NAME = 100
MAX_ESCALATION_NOTE = 1000  # what the notifier may forward to support (contract B's note)
MAX_ANSWER = 200  # Telegram's limit for a callback answer
ACTION_NAMES = {
    OrderAction.TAKE: "take",
    OrderAction.COMPLETE: "complete",
    OrderAction.CANCEL: "cancel",
    OrderAction.RELEASE: "release",
    OrderAction.ESCALATE: "escalate",
    OrderAction.REASSIGN: "reassign",
    OrderAction.ACCEPT: "accept",
}
DONE = {
    OrderAction.TAKE: "Order {order} is yours: complete, cancel, release or escalate it from the card.",
    OrderAction.CANCEL: "Order {order} is cancelled.",
    OrderAction.RELEASE: "Order {order} is back in the pool.",
}
ORDER_CHANGED = "The order changed meanwhile: the card now shows where it stands."
UNLINKED = "Your Telegram account is no longer linked to an operator. Ask an admin for a new link code."
REFRESH_AFTER = frozenset(
    {ErrorCode.ORDER_ALREADY_TAKEN, ErrorCode.ORDER_VERSION_MISMATCH, ErrorCode.ORDER_TRANSITION_NOT_ALLOWED}
)


def explain(error: DomainError, *, language: Language = "en") -> str:
    """What to tell the operator about order-api's refusal, in plain text."""
    peer_code = error.extra.get("peer_code")
    if isinstance(error, PeerUnavailableError):
        text = unavailable(error)
    elif error.code == ErrorCode.OPERATOR_AT_CAPACITY:
        held = error.extra.get("held_orders")
        count = orders_count(held if isinstance(held, int) else 0, language)
        text = say("at_capacity", language, held=count)
    elif error.code == ErrorCode.ORDER_ALREADY_TAKEN:
        text = f"Already taken by {held_by_name(error) or 'another operator'}."
    elif error.code == ErrorCode.ORDER_NOT_HELD:
        text = not_held(held_by_name(error))
    elif error.code in (ErrorCode.ORDER_VERSION_MISMATCH, ErrorCode.ORDER_TRANSITION_NOT_ALLOWED):
        text = ORDER_CHANGED
    elif error.code == ErrorCode.ORDER_ALREADY_ESCALATED:
        text = "The order is already escalated to support."
    elif error.code == ErrorCode.ORDER_NOT_FOUND:
        text = "order-api does not know this order."
    elif error.code == ErrorCode.OPERATOR_NOT_FOUND:
        text = "No active operator has that name."
    elif error.code == ErrorCode.OPERATOR_INACTIVE:
        text = "That operator is deactivated."
    elif peer_code == ErrorCode.TELEGRAM_OPERATOR_UNKNOWN:
        text = UNLINKED
    elif peer_code == ErrorCode.OPERATOR_FORBIDDEN:
        text = "Your role may not do this."
    else:
        text = f"order-api refused: {error.detail}"
    return text[:MAX_ANSWER]


def not_held(holder: str | None) -> str:
    """What an operator pressing a button of an order they do not hold is told."""
    return f"{holder} holds this order: only they can do this." if holder else "Take the order first."


async def forget_if_unlinked(
    error: DomainError, *, operator_links: OperatorLinks, operator: LinkedOperator
) -> None:
    """order-api no longer acts for this Telegram user: neither does the gateway from now on."""
    if error.extra.get("peer_code") == ErrorCode.TELEGRAM_OPERATOR_UNKNOWN:
        await operator_links.forget(telegram_user_id=operator.telegram_user_id)


@dataclass(frozen=True, slots=True)
class OrderDesk:
    """What the order handlers work with; the dispatcher gives it to them as ``desk``."""

    database: Database
    order_api: OrderApiClient
    operator_links: OperatorLinks
    metrics: GatewayMetrics
    completion_draft_lifetime: timedelta

    async def refused(self, error: DomainError, *, action: str, operator: LinkedOperator) -> None:
        """Count ``action`` refused (or its peer unavailable) and stop acting for an operator order-api
        no longer knows."""
        outcome = "unavailable" if isinstance(error, PeerUnavailableError) else "refused"
        self.metrics.callbacks.labels(action, outcome).inc()
        await forget_if_unlinked(error, operator_links=self.operator_links, operator=operator)


async def _act(
    order_api: OrderApiClient, *, action: OrderAction, data: OrderCallback, operator: LinkedOperator
) -> OperatorOrder:
    user = operator.telegram_user_id
    if action is OrderAction.TAKE:
        return await order_api.take(order_id=data.order_id, telegram_user_id=user)
    if action is OrderAction.ACCEPT:
        return await order_api.accept(order_id=data.order_id, telegram_user_id=user)
    if action is OrderAction.RELEASE:
        return await order_api.release(order_id=data.order_id, telegram_user_id=user, version=data.version)
    return await order_api.change_status(
        order_id=data.order_id, telegram_user_id=user, status="cancelled", version=data.version
    )


async def show_current_state(
    *, order_id: str, operator: LinkedOperator, bot: Bot, database: Database, order_api: OrderApiClient
) -> None:
    """After a refusal that means the card is outdated: show the order as order-api has it now."""
    try:
        order = await order_api.get_order(order_id=order_id, telegram_user_id=operator.telegram_user_id)
    except DomainError as error:
        log.info(
            "could not read the order to refresh its card", extra={"order_id": order_id, "code": error.code}
        )
        return
    await show_order_state(
        database=database, bot=bot, view=order.view(), escalation=EscalationChange(escalated=order.escalated)
    )


async def on_order_button(
    query: CallbackQuery,
    callback_data: OrderCallback,
    operator: LinkedOperator,
    bot: Bot,
    desk: OrderDesk,
) -> None:
    action = callback_data.action
    metrics = desk.metrics
    if action is OrderAction.ESCALATE:
        metrics.callbacks.labels(ACTION_NAMES[action], "asked").inc()
        await _ask_for_escalation_reason(query, callback_data=callback_data, operator=operator, bot=bot)
        return
    if action is OrderAction.REASSIGN:
        metrics.callbacks.labels(ACTION_NAMES[action], "asked").inc()
        await _ask_for_operator(query, callback_data=callback_data, operator=operator, bot=bot)
        return
    try:
        order = await _act(desk.order_api, action=action, data=callback_data, operator=operator)
    except DomainError as error:
        await desk.refused(error, action=ACTION_NAMES[action], operator=operator)
        await query.answer(explain(error, language=language_of(query.from_user)), show_alert=True)
        if error.code in REFRESH_AFTER:
            await show_current_state(
                order_id=callback_data.order_id,
                operator=operator,
                bot=bot,
                database=desk.database,
                order_api=desk.order_api,
            )
        return
    metrics.callbacks.labels(ACTION_NAMES[action], "done").inc()
    log.info(
        "order button handled",
        extra={"order_id": order.id, "action": ACTION_NAMES[action], "operator_id": operator.operator_id},
    )
    if action is OrderAction.ACCEPT:
        await query.answer(say("accepted", language_of(query.from_user), order=short_id(order.id)))
    else:
        await query.answer(DONE[action].format(order=short_id(order.id)))
    await show_order_state(
        database=desk.database,
        bot=bot,
        view=order.view(),
        escalation=EscalationChange(escalated=order.escalated),
    )


async def _ask_for_escalation_reason(
    query: CallbackQuery, *, callback_data: OrderCallback, operator: LinkedOperator, bot: Bot
) -> None:
    """Escalating needs a reason: ask for it as a reply. The prompt names the order, so the reply carries
    everything needed to escalate (no conversation state to lose in a restart or across replicas)."""
    text = (
        f"🆘 {mention(operator)}, reply to this message with what support should look at.\n"
        f"Escalate order {html(callback_data.order_id)}."
    )
    await _prompt(query, operator=operator, bot=bot, text=text, placeholder="What should support look at?")
    await query.answer("Reply to my message with the reason: support is told once you send it.")


def mention(operator: LinkedOperator) -> str:
    return f'<a href="tg://user?id={operator.telegram_user_id}">{html(operator.name)}</a>'


async def _prompt(
    query: CallbackQuery, *, operator: LinkedOperator, bot: Bot, text: str, placeholder: str
) -> None:
    """Ask the one who pressed for a reply, under the card pressed (in a private chat when it is gone)."""
    if query.message is not None:
        chat_id = query.message.chat.id
        reply_to = ReplyParameters(message_id=query.message.message_id, allow_sending_without_reply=True)
    else:
        chat_id, reply_to = operator.telegram_user_id, None
    await bot.send_message(
        chat_id=chat_id,
        text=text,
        reply_markup=ForceReply(selective=True, input_field_placeholder=placeholder),
        reply_parameters=reply_to,
    )


def reply_to_prompt(prompt: re.Pattern[str], message: Message, bot: Bot) -> dict[str, Any] | bool:
    """A reply to one of the bot's prompts matching ``prompt``; gives the handler its named groups
    (``order_id`` …)."""
    replied = message.reply_to_message
    if replied is None or replied.from_user is None or replied.from_user.id != bot.id or not replied.text:
        return False
    found = prompt.search(replied.text)
    return found.groupdict() if found else False


def escalation_reply(message: Message, bot: Bot) -> dict[str, Any] | bool:
    """Filter: a reply to the bot's escalation prompt; gives the handler ``order_id``."""
    return reply_to_prompt(ESCALATION_PROMPT, message, bot)


def reassign_reply(message: Message, bot: Bot) -> dict[str, Any] | bool:
    """Filter: a reply to the bot's reassign prompt; gives the handler ``order_id`` and ``version``, the card's
    when Reassign was pressed (``None`` for a prompt written before the version was in it)."""
    found = reply_to_prompt(REASSIGN_PROMPT, message, bot)
    if isinstance(found, dict):
        found["version"] = int(found["version"]) if found["version"] else None
    return found


async def _ask_for_operator(
    query: CallbackQuery, *, callback_data: OrderCallback, operator: LinkedOperator, bot: Bot
) -> None:
    """Reassigning needs the operator to hand the order to: ask for their name as a reply (the prompt names
    the order, as the escalation prompt does). order-api decides who may reassign (support and admins)."""
    language = language_of(query.from_user)
    order = html(callback_data.order_id)
    if callback_data.version is not None:  # the reassignment carries the card's version (If-Match)
        order = f"{order} at version {callback_data.version}"
    text = say("reassign_prompt", language, mention=mention(operator), order_id=order)
    await _prompt(query, operator=operator, bot=bot, text=text, placeholder="Operator's name")
    await query.answer(say("reassign_asked", language))


async def on_reassign_name(
    message: Message,
    order_id: str,
    version: int | None,
    operator: LinkedOperator,
    bot: Bot,
    desk: OrderDesk,
) -> None:
    name = (message.text or "").strip().removeprefix("@")
    if not name or len(name) > MAX_OPERATOR_NAME:
        await message.reply("Send the operator's name as text, in reply to my message.")
        return
    try:
        order = await desk.order_api.reassign(
            order_id=order_id, telegram_user_id=operator.telegram_user_id, operator_name=name, version=version
        )
    except DomainError as error:
        await desk.refused(error, action="reassign", operator=operator)
        await message.reply(html(explain(error, language=language_of(message.from_user))))
        return
    desk.metrics.callbacks.labels("reassign", "done").inc()
    language = language_of(message.from_user)
    await message.reply(
        say("reassigned", language, order=html(short_id(order.id)), name=html(order.operator_name or name))
    )
    await show_order_state(
        database=desk.database,
        bot=bot,
        view=order.view(),
        escalation=EscalationChange(escalated=order.escalated),
    )


async def on_escalation_reason(
    message: Message,
    order_id: str,
    operator: LinkedOperator,
    bot: Bot,
    desk: OrderDesk,
) -> None:
    reason = (message.text or message.caption or "").strip()
    if not reason:
        await message.reply("Send the reason as text, in reply to my message.")
        return
    if len(reason) > MAX_ESCALATION_NOTE:
        await message.reply(f"Please keep it under {MAX_ESCALATION_NOTE} characters and reply again.")
        return
    try:
        await desk.order_api.escalate(
            order_id=order_id, telegram_user_id=operator.telegram_user_id, comment=reason
        )
    except DomainError as error:
        await desk.refused(error, action="escalate", operator=operator)
        await message.reply(html(explain(error, language=language_of(message.from_user))))
        return
    desk.metrics.callbacks.labels("escalate", "done").inc()
    await message.reply(f"🆘 Order <code>{html(short_id(order_id))}</code> is escalated to support.")
    try:
        order = await desk.order_api.get_order(order_id=order_id, telegram_user_id=operator.telegram_user_id)
    except DomainError as error:
        log.info("could not read the escalated order", extra={"order_id": order_id, "code": error.code})
        return
    await show_order_state(
        database=desk.database,
        bot=bot,
        view=order.view(),
        escalation=EscalationChange(escalated=True, note=reason),
    )


def router() -> Router:
    orders = Router(name="orders")
    orders.callback_query.filter(LinkedOnly())
    orders.message.filter(LinkedOnly())
    orders.callback_query.register(on_order_button, OrderCallback.filter())
    orders.message.register(on_escalation_reason, escalation_reply)
    orders.message.register(on_reassign_name, reassign_reply)
    return orders
