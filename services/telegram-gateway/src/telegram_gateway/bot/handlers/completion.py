"""Complete, with the transaction record: the card's Complete button starts the operator's completion of the
order, and the bot asks for the record one question at a time, each a reply-forcing message that names the
order (see ``completions.service`` for the questions). The answers so far are a draft in the gateway's
database, so the next reply may reach any replica; only the operator who pressed Complete, replying to the
latest question before the draft expires (``completion_draft_seconds``), moves it on.

The last answer sends the completion with the card's version (``If-Match``). order-api decides:

- a field of the record refused (``422``): the bot says which answer was wrong and asks it again;
- the record left out (⏭ Skip record, before the first answer) where the desk requires it: the bot says so
  and keeps asking;
- ``409 payment_mismatch``: ordered against received, and a choice between completing with the payout
  adjusted to what arrived and holding the order for support (an escalation with the reason and the deposit).

``/cancel`` (or ✖️ Cancel) drops the draft; the order is unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    ForceReply,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
)

from desk_contracts.errors import ErrorCode
from servicekit.errors import DomainError, PeerUnavailableError
from telegram_gateway.bot.handlers.access import LinkedOnly, unavailable
from telegram_gateway.bot.handlers.orders import (
    ORDER_CHANGED,
    REFRESH_AFTER,
    OrderDesk,
    explain,
    mention,
    not_held,
    reply_to_prompt,
    show_current_state,
)
from telegram_gateway.bot.texts import Language, language_of, say
from telegram_gateway.cards.callback_data import (
    CompletionCallback,
    CompletionChoice,
    OrderAction,
    OrderCallback,
)
from telegram_gateway.cards.render import amount_text, html, short_id
from telegram_gateway.cards.service import EscalationChange, show_order_state
from telegram_gateway.clients.order_api import LinkedOperator
from telegram_gateway.completions import service
from telegram_gateway.completions.models import CompletionDraft
from telegram_gateway.completions.service import FIELD_STEPS, AnswerInvalidError, Step

log = logging.getLogger("telegram_gateway.bot")

COMPLETION_PROMPT = re.compile(r"Complete order (?P<order_id>[A-Za-z0-9-]{1,36})\b")
ESCALATION_FIELD_STEPS = {"deposit.tx_hash": Step.DEPOSIT_TX, "deposit.amount": Step.RECEIVED}
"""The hold for support's escalation sends the deposit: its refused fields, as questions."""


def completion_reply(message: Message, bot: Bot) -> dict[str, Any] | bool:
    """Filter: a reply to one of the bot's completion questions; gives the handler ``order_id``."""
    return reply_to_prompt(COMPLETION_PROMPT, message, bot)


def _choice(choice: CompletionChoice, order_id: str, language: Language) -> InlineKeyboardButton:
    label = {
        CompletionChoice.SKIP: "button_skip",
        CompletionChoice.CANCEL: "button_cancel",
        CompletionChoice.ADJUSTED: "button_adjusted",
        CompletionChoice.HOLD: "button_hold",
    }[choice]
    data = CompletionCallback(choice=choice, order_id=order_id).pack()
    return InlineKeyboardButton(text=say(label, language), callback_data=data)


def _under(message_id: int | None) -> ReplyParameters | None:
    """Sent as a reply to ``message_id`` (still sent when that message is gone)."""
    if message_id is None:
        return None
    return ReplyParameters(message_id=message_id, allow_sending_without_reply=True)


def _amount(draft: CompletionDraft, value: object, *, side: str) -> str:
    return f"{html(amount_text(str(value)))} {html(draft.order[f'{side}_currency'])}"


def _question(draft: CompletionDraft, operator: LinkedOperator, language: Language) -> str:
    order = {key: html(value) for key, value in draft.order.items()}
    step = Step(draft.step)
    if step in (Step.DEPOSIT_TX, Step.RECEIVED):
        values = {"currency": order["from_currency"], "network": order["from_network"]}
    else:
        values = {"currency": order["to_currency"], "network": order["to_network"]}
    line = say(f"ask_{step}", language, ordered=html(amount_text(draft.order["amount"])), **values)
    return f"📝 {mention(operator)}, {line}\nComplete order {html(draft.order_id)}."


async def _ask(
    bot: Bot,
    desk: OrderDesk,
    draft: CompletionDraft,
    *,
    operator: LinkedOperator,
    language: Language,
    problem: str | None = None,
    reply_to: int | None = None,
) -> None:
    """Ask the draft's current question (after ``problem``, what was wrong with the last answer) and keep
    the draft, with the question as the one to reply to."""
    text = _question(draft, operator, language)
    if problem:
        text = f"⚠️ {problem}\n{text}"
    asked = await bot.send_message(
        chat_id=draft.chat_id,
        text=text,
        reply_markup=ForceReply(selective=True, input_field_placeholder=say(f"label_{draft.step}", language)),
        reply_parameters=_under(reply_to),
    )
    draft.prompt_message_id = asked.message_id
    await service.save_draft(database=desk.database, draft=draft, lifetime=desk.completion_draft_lifetime)


# --- Complete pressed ------------------------------------------------------------------------------------


async def on_complete(
    query: CallbackQuery, callback_data: OrderCallback, operator: LinkedOperator, bot: Bot, desk: OrderDesk
) -> None:
    """Start the completion: the order must be the one the card showed, held by the one who pressed."""
    language = language_of(query.from_user)
    try:
        order = await desk.order_api.get_order(
            order_id=callback_data.order_id, telegram_user_id=operator.telegram_user_id
        )
    except DomainError as error:
        await desk.refused(error, action="complete", operator=operator)
        await query.answer(explain(error, language=language), show_alert=True)
        return
    refusal = None
    if order.version != callback_data.version or order.status != "in_progress":
        refusal = ORDER_CHANGED
    elif order.operator_id != operator.operator_id:
        refusal = not_held(order.operator_name)
    if refusal is not None:
        desk.metrics.callbacks.labels("complete", "refused").inc()
        await query.answer(refusal, show_alert=True)
        await show_order_state(
            database=desk.database,
            bot=bot,
            view=order.view(),
            escalation=EscalationChange(escalated=order.escalated),
        )
        return
    card = query.message
    draft = await service.start_draft(
        database=desk.database,
        order=order,
        version=order.version,
        telegram_user_id=operator.telegram_user_id,
        chat_id=card.chat.id if card is not None else operator.telegram_user_id,
        lifetime=desk.completion_draft_lifetime,
    )
    await bot.send_message(
        chat_id=draft.chat_id,
        text=say("completion_started", language, order=html(short_id(order.id))),
        reply_markup=InlineKeyboardMarkup(
            inline_keyboard=[
                [
                    _choice(CompletionChoice.SKIP, order.id, language),
                    _choice(CompletionChoice.CANCEL, order.id, language),
                ]
            ]
        ),
        reply_parameters=_under(card.message_id if card else None),
    )
    recorded = order.recorded_deposit_amount()
    problem = None
    if recorded is not None:
        received = _amount(draft, recorded, side="from")
        problem = say("deposit_on_record", language, received=received)
    await _ask(bot, desk, draft, operator=operator, language=language, problem=problem)
    desk.metrics.callbacks.labels("complete", "asked").inc()
    await query.answer(say("completion_asked", language))


# --- an answer -------------------------------------------------------------------------------------------


async def on_answer(
    message: Message, order_id: str, operator: LinkedOperator, bot: Bot, desk: OrderDesk
) -> None:
    draft = await service.find_draft(
        database=desk.database, order_id=order_id, telegram_user_id=operator.telegram_user_id
    )
    if draft is None:
        return  # another operator's question, or a completion already closed
    language = language_of(message.from_user)
    replied = message.reply_to_message
    if replied is None or (message.chat.id, replied.message_id) != (draft.chat_id, draft.prompt_message_id):
        await message.reply(say("reply_to_latest", language))
        return
    if service.expired(draft):
        await service.forget_draft(
            database=desk.database, order_id=order_id, telegram_user_id=draft.telegram_user_id
        )
        await message.reply(say("completion_expired", language))
        return
    step = Step(draft.step)
    try:
        value = service.parse_answer(step, message.text or "", ordered=draft.order["amount"])
    except AnswerInvalidError as invalid:
        problem = say(invalid.reason, language)
        await _ask(
            bot,
            desk,
            draft,
            operator=operator,
            language=language,
            problem=problem,
            reply_to=message.message_id,
        )
        return
    draft.answers = {**draft.answers, step.value: value}
    following = service.next_step(step, draft.answers)
    if following is not None:
        draft.step = following.value
        await _ask(bot, desk, draft, operator=operator, language=language, reply_to=message.message_id)
        return
    await _complete(bot, desk, draft, operator=operator, language=language, reply_to=message.message_id)


async def _complete(
    bot: Bot,
    desk: OrderDesk,
    draft: CompletionDraft,
    *,
    operator: LinkedOperator,
    language: Language,
    reply_to: int | None = None,
    adjusted_payout: bool = False,
    skip: bool = False,
) -> None:
    record = None if skip else service.transaction_record(draft.answers, adjusted_payout=adjusted_payout)
    try:
        order = await desk.order_api.change_status(
            order_id=draft.order_id,
            telegram_user_id=operator.telegram_user_id,
            status="completed",
            version=draft.version,
            transaction=record,
        )
    except DomainError as error:
        await _refused(
            error, bot, desk, draft, operator=operator, language=language, reply_to=reply_to, skipped=skip
        )
        return
    await service.forget_draft(
        database=desk.database, order_id=draft.order_id, telegram_user_id=draft.telegram_user_id
    )
    desk.metrics.callbacks.labels("complete", "done").inc()
    log.info(
        "order completed from Telegram",
        extra={"order_id": order.id, "operator_id": operator.operator_id, "recorded": record is not None},
    )
    short = html(short_id(order.id))
    if record is None:
        text = say("completed_without_record", language, order=short)
    else:
        text = say(
            "completed_with_record",
            language,
            order=short,
            received=_amount(draft, draft.answers[Step.RECEIVED], side="from"),
            sent=_amount(draft, draft.answers[Step.SENT], side="to"),
        )
    await _say(bot, draft, text, reply_to=reply_to)
    await show_order_state(
        database=desk.database,
        bot=bot,
        view=order.view(),
        escalation=EscalationChange(escalated=order.escalated),
    )


async def _say(bot: Bot, draft: CompletionDraft, text: str, *, reply_to: int | None = None) -> Message:
    return await bot.send_message(
        chat_id=draft.chat_id,
        text=text,
        reply_parameters=_under(reply_to),
    )


def _refused_field(error: DomainError, *, skipped: bool) -> tuple[str, str] | None:
    """The field of the record order-api refused, and why (``transaction`` itself: the record is required)."""
    status = error.extra.get("peer_status", error.status)
    errors = error.extra.get("errors")
    if status != 422:
        return None
    for item in errors if isinstance(errors, list) else []:
        field = str(item.get("field", "")) if isinstance(item, dict) else ""
        if field.startswith(("transaction", "deposit")):
            return field, str(item.get("message") or error.detail)
    return ("transaction", error.detail) if skipped else None


async def _refused(
    error: DomainError,
    bot: Bot,
    desk: OrderDesk,
    draft: CompletionDraft,
    *,
    operator: LinkedOperator,
    language: Language,
    reply_to: int | None,
    skipped: bool = False,
) -> None:
    """order-api did not complete the order (or hold it): a question asked again, the payment mismatch's
    choice, or the end of the draft with order-api's reason."""
    if error.code == ErrorCode.PAYMENT_MISMATCH:
        await _offer_mismatch_choice(error, bot, desk, draft, language=language, reply_to=reply_to)
        return
    refused = _refused_field(error, skipped=skipped)
    if refused is not None:
        field, reason = refused
        step = FIELD_STEPS.get(field) or ESCALATION_FIELD_STEPS.get(field) or Step.DEPOSIT_TX
        if field == "transaction" and skipped:
            problem = say("record_required", language)
        else:
            problem = say(
                "answer_refused", language, what=say(f"label_{step}", language), reason=html(reason)
            )
        draft.step = step.value
        await _ask(bot, desk, draft, operator=operator, language=language, problem=problem, reply_to=reply_to)
        desk.metrics.callbacks.labels("complete", "refused").inc()
        return
    await desk.refused(error, action="complete", operator=operator)
    if isinstance(error, PeerUnavailableError):  # nothing changed: the same question (or choice) again
        problem = html(unavailable(error))
        if Step(draft.step) is Step.DECISION:
            await _say(bot, draft, problem, reply_to=reply_to)
        else:
            await _ask(
                bot, desk, draft, operator=operator, language=language, problem=problem, reply_to=reply_to
            )
        return
    await service.forget_draft(
        database=desk.database, order_id=draft.order_id, telegram_user_id=draft.telegram_user_id
    )
    await _say(bot, draft, html(explain(error, language=language)), reply_to=reply_to)
    if error.code in REFRESH_AFTER:
        await show_current_state(
            order_id=draft.order_id,
            operator=operator,
            bot=bot,
            database=desk.database,
            order_api=desk.order_api,
        )


async def _offer_mismatch_choice(
    error: DomainError,
    bot: Bot,
    desk: OrderDesk,
    draft: CompletionDraft,
    *,
    language: Language,
    reply_to: int | None,
) -> None:
    ordered = str(error.extra.get("ordered") or draft.order["amount"])
    received = str(error.extra.get("received") or draft.answers[Step.RECEIVED])
    difference = error.extra.get("difference")
    if difference not in ("underpaid", "overpaid"):
        difference = service.difference_of(ordered=ordered, received=received)
    draft.step = Step.DECISION.value
    draft.answers = {**draft.answers, "ordered": ordered, "difference": difference}
    text = say(
        "payment_mismatch",
        language,
        order=html(short_id(draft.order_id)),
        difference=say(str(difference), language),
        ordered=_amount(draft, ordered, side="from"),
        received=_amount(draft, received, side="from"),
    )
    choices = [
        [_choice(CompletionChoice.ADJUSTED, draft.order_id, language)],
        [_choice(CompletionChoice.HOLD, draft.order_id, language)],
        [_choice(CompletionChoice.CANCEL, draft.order_id, language)],
    ]
    asked = await bot.send_message(
        chat_id=draft.chat_id,
        text=text,
        reply_markup=InlineKeyboardMarkup(inline_keyboard=choices),
        reply_parameters=_under(reply_to),
    )
    draft.prompt_message_id = asked.message_id
    await service.save_draft(database=desk.database, draft=draft, lifetime=desk.completion_draft_lifetime)
    desk.metrics.callbacks.labels("complete", "mismatch").inc()


# --- the choices -----------------------------------------------------------------------------------------


async def on_choice(
    query: CallbackQuery,
    callback_data: CompletionCallback,
    operator: LinkedOperator,
    bot: Bot,
    desk: OrderDesk,
) -> None:
    """Skip record, Cancel, and the payment mismatch's two ways out; only on the presser's own draft."""
    language = language_of(query.from_user)
    draft = await service.find_draft(
        database=desk.database, order_id=callback_data.order_id, telegram_user_id=operator.telegram_user_id
    )
    if draft is None:
        await query.answer(say("completion_closed", language), show_alert=True)
        return
    if service.expired(draft):
        await service.forget_draft(
            database=desk.database, order_id=draft.order_id, telegram_user_id=draft.telegram_user_id
        )
        await query.answer(say("completion_expired", language), show_alert=True)
        return
    choice, step = callback_data.choice, Step(draft.step)
    if choice is CompletionChoice.CANCEL:
        await query.answer()
        await _cancel(bot, desk, draft, language=language)
        return
    if choice is CompletionChoice.SKIP and (step is not Step.DEPOSIT_TX or draft.answers):
        await query.answer(say("skip_too_late", language), show_alert=True)
        return
    if choice in (CompletionChoice.ADJUSTED, CompletionChoice.HOLD) and step is not Step.DECISION:
        await query.answer(say("completion_closed", language), show_alert=True)
        return
    await query.answer()
    if choice is CompletionChoice.HOLD:
        await _hold_for_support(bot, desk, draft, operator=operator, language=language)
        return
    await _complete(
        bot,
        desk,
        draft,
        operator=operator,
        language=language,
        adjusted_payout=choice is CompletionChoice.ADJUSTED,
        skip=choice is CompletionChoice.SKIP,
    )


async def _hold_for_support(
    bot: Bot, desk: OrderDesk, draft: CompletionDraft, *, operator: LinkedOperator, language: Language
) -> None:
    """Escalate with the payment mismatch as the reason and the deposit seen; the order stays held."""
    difference = str(draft.answers["difference"])
    ordered = f"{amount_text(draft.answers['ordered'])} {draft.order['from_currency']}"
    received = f"{amount_text(draft.answers[Step.RECEIVED])} {draft.order['from_currency']}"
    note = say("held_note", "en", difference=difference.capitalize(), ordered=ordered, received=received)
    try:
        await desk.order_api.escalate(
            order_id=draft.order_id,
            telegram_user_id=operator.telegram_user_id,
            comment=note,
            reason="underpaid" if difference == "underpaid" else "overpaid",
            deposit=service.seen_deposit(draft.answers),
        )
    except DomainError as error:
        if error.code == ErrorCode.ORDER_ALREADY_ESCALATED:  # the answers stay; the choice stays open
            await service.save_draft(
                database=desk.database, draft=draft, lifetime=desk.completion_draft_lifetime
            )
            desk.metrics.callbacks.labels("complete", "refused").inc()
            await _say(
                bot, draft, say("already_with_support", language, order=html(short_id(draft.order_id)))
            )
            return
        await _refused(error, bot, desk, draft, operator=operator, language=language, reply_to=None)
        return
    await service.forget_draft(
        database=desk.database, order_id=draft.order_id, telegram_user_id=draft.telegram_user_id
    )
    desk.metrics.callbacks.labels("complete", "held").inc()
    await _say(
        bot,
        draft,
        say(
            "held_for_support",
            language,
            order=html(short_id(draft.order_id)),
            difference=say(difference, language),
        ),
    )
    try:
        order = await desk.order_api.get_order(
            order_id=draft.order_id, telegram_user_id=operator.telegram_user_id
        )
    except DomainError as error:
        log.info("could not read the held order", extra={"order_id": draft.order_id, "code": error.code})
        return
    await show_order_state(
        database=desk.database,
        bot=bot,
        view=order.view(),
        escalation=EscalationChange(escalated=True, note=note),
    )


async def _cancel(bot: Bot, desk: OrderDesk, draft: CompletionDraft, *, language: Language) -> None:
    await service.forget_draft(
        database=desk.database, order_id=draft.order_id, telegram_user_id=draft.telegram_user_id
    )
    desk.metrics.callbacks.labels("complete", "cancelled").inc()
    await _say(bot, draft, say("completion_cancelled", language, order=html(short_id(draft.order_id))))


async def on_cancel(message: Message, operator: LinkedOperator, bot: Bot, desk: OrderDesk) -> None:
    """``/cancel``: drop the operator's completions (the one whose question it replies to, else all)."""
    language = language_of(message.from_user)
    drafts = await service.drafts_of(database=desk.database, telegram_user_id=operator.telegram_user_id)
    replied = completion_reply(message, bot)
    if isinstance(replied, dict):
        drafts = [draft for draft in drafts if draft.order_id == replied["order_id"]]
    if not drafts:
        await message.reply(say("nothing_to_cancel", language))
        return
    for draft in drafts:
        await _cancel(bot, desk, draft, language=language)


def router() -> Router:
    completion = Router(name="completion")
    completion.callback_query.filter(LinkedOnly())
    completion.message.filter(LinkedOnly())
    completion.callback_query.register(on_complete, OrderCallback.filter(F.action == OrderAction.COMPLETE))
    completion.callback_query.register(on_choice, CompletionCallback.filter())
    completion.message.register(on_cancel, Command("cancel"))
    completion.message.register(on_answer, completion_reply)
    return completion
