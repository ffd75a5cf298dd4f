"""Posting the notifier's messages: each ``message_id`` once, order cards edited rather than repeated.

The delivery row is claimed first (insert-or-nothing on the message id), in the request's transaction: a
concurrent repeat waits for it and then answers ``duplicate``; a delivery that fails (Telegram down) rolls
back with its row, so the notifier's retry starts afresh. Each delivery posts at most one new message, and
posts it after every edit it needs (edits repeat harmlessly: "message is not modified" is success), so a
retry never leaves a second copy of a card behind.
"""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import AiogramError
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import utcnow
from servicekit.errors import DomainError
from telegram_gateway.bot.errors import TelegramDisabledError, classify
from telegram_gateway.cards import repository as cards_repository
from telegram_gateway.cards.models import MessageKind, PostedMessage
from telegram_gateway.cards.render import alert_text, assignment_message, reassignment_texts
from telegram_gateway.cards.schemas import OrderView
from telegram_gateway.cards.service import EscalationChange, post_card, record_snapshot, refresh_cards
from telegram_gateway.messages import repository
from telegram_gateway.messages.schemas import (
    AlertView,
    AssignmentView,
    MessageCreate,
    MessageDeliveryRead,
    Outcome,
    ReassignmentView,
)
from telegram_gateway.metrics import GatewayMetrics
from telegram_gateway.settings import Settings

log = logging.getLogger("telegram_gateway.messages")

POST_EVENTS = frozenset(
    {"order.created", "order.released", "order.assignment_timed_out", "order.assignment_lapsed"}
)
PENDING = "pending"


async def deliver_message(
    *,
    session: AsyncSession,
    bot: Bot | None,
    settings: Settings,
    metrics: GatewayMetrics,
    request: MessageCreate,
) -> MessageDeliveryRead:
    """Post or edit what ``request`` asks for, once per ``message_id``."""
    try:
        delivered = await _deliver(session=session, bot=bot, settings=settings, request=request)
    except DomainError as error:
        metrics.messages.labels(request.kind, error.code).inc()
        raise
    metrics.messages.labels(request.kind, delivered.outcome).inc()
    return delivered


async def _deliver(
    *, session: AsyncSession, bot: Bot | None, settings: Settings, request: MessageCreate
) -> MessageDeliveryRead:
    if bot is None:
        raise TelegramDisabledError("No bot token is configured: Telegram is off on this gateway.")
    chat_id = settings.chat_id_for(request.chat)
    if chat_id is None:
        raise TelegramDisabledError("No chat is configured: set TELEGRAM_GATEWAY_OPERATORS_CHAT_ID.")
    message_id = str(request.message_id)
    if not await _claim(session, request=request, message_id=message_id):
        first = await repository.delivery(session, message_id=message_id)
        ids = list(first.telegram_message_ids) if first is not None else []
        return MessageDeliveryRead(message_id=message_id, outcome="duplicate", telegram_message_ids=ids)
    try:
        if request.alert is not None:
            outcome, ids = await _post_alert(
                session, bot=bot, chat_id=chat_id, alert=request.alert, delivery_id=message_id
            )
        else:
            outcome, ids = await _deliver_order_card(
                session, bot=bot, settings=settings, chat_id=chat_id, request=request, delivery_id=message_id
            )
    except AiogramError as error:
        raise classify(error) from error
    await repository.record_outcome(session, message_id=message_id, outcome=outcome, telegram_message_ids=ids)
    log.info(
        "message delivered",
        extra={
            "message_id": message_id,
            "kind": request.kind,
            "order_event": request.event,
            "outcome": outcome,
        },
    )
    return MessageDeliveryRead(message_id=message_id, outcome=outcome, telegram_message_ids=ids)


async def _tell_both_operators(
    bot: Bot, *, view: OrderView, reassignment: ReassignmentView, note: str | None
) -> None:
    """A private message to each operator of a reassignment who is linked to Telegram. Best effort: the cards
    already show the new holder, and an operator who never opened a chat with the bot cannot be written to
    (Telegram refuses), which must not make the notifier repeat the edit."""
    texts = reassignment_texts(view, reassignment=reassignment, note=note)
    for telegram_user_id, text in texts:
        try:
            await bot.send_message(chat_id=telegram_user_id, text=text)
        except AiogramError as error:
            log.warning(
                "could not tell an operator of a reassignment",
                extra={
                    "order_id": view.order_id,
                    "telegram_user_id": telegram_user_id,
                    "error": str(error)[:300],
                },
            )


async def _tell_the_assigned_operator(
    bot: Bot, *, settings: Settings, request: MessageCreate, view: OrderView, assignment: AssignmentView
) -> None:
    """A private message to the operator an order was auto-assigned to (with Accept and the card's buttons),
    or whose assignment lapsed. Best effort, like a reassignment's: the cards already show the order."""
    if assignment.telegram_user_id is None or request.event is None:
        return
    message = assignment_message(
        view,
        event=request.event,
        lapses_at=assignment.lapses_at,
        note=request.note,
        language=settings.operators_language,
    )
    try:
        await bot.send_message(
            chat_id=assignment.telegram_user_id, text=message.text, reply_markup=message.keyboard
        )
    except AiogramError as error:
        log.warning(
            "could not tell an operator of an auto-assignment",
            extra={
                "order_id": view.order_id,
                "telegram_user_id": assignment.telegram_user_id,
                "error": str(error)[:300],
            },
        )


async def _claim(session: AsyncSession, *, request: MessageCreate, message_id: str) -> bool:
    """Record the delivery; ``False`` when this message id was handled before (or is being handled by a
    transaction that has now committed)."""
    return await repository.claim_delivery(
        session,
        values={
            "message_id": message_id,
            "kind": request.kind,
            "event": request.event,
            "order_id": request.order.order_id if request.order else None,
            "outcome": PENDING,
            "telegram_message_ids": [],
            "received_at": utcnow(),
        },
    )


async def _announced_before(session: AsyncSession, *, order_id: str, chat_id: int, event: str) -> bool:
    """An ``order.created`` for an order that already has a card in the chat (announced again, or after a
    faster path showed it) edits that card instead of posting another."""
    if event != "order.created":
        return False
    return await cards_repository.has_order_card(session, order_id=order_id, chat_id=chat_id)


async def _post_alert(
    session: AsyncSession, *, bot: Bot, chat_id: int, alert: AlertView, delivery_id: str
) -> tuple[Outcome, list[int]]:
    message = await bot.send_message(
        chat_id=chat_id, text=alert_text(severity=alert.severity, title=alert.title, text=alert.text)
    )
    now = utcnow()
    session.add(
        PostedMessage(
            chat_id=chat_id,
            message_id=message.message_id,
            kind=MessageKind.ALERT.value,
            order_id=None,
            posted_for=alert.key[:40],
            delivery_id=delivery_id,
            posted_at=now,
        )
    )
    await session.flush()
    return "posted", [message.message_id]


async def _deliver_order_card(
    session: AsyncSession,
    *,
    bot: Bot,
    settings: Settings,
    chat_id: int,
    request: MessageCreate,
    delivery_id: str,
) -> tuple[Outcome, list[int]]:
    """order.created posts the order's card (or, when the order already has one in that chat, edits it: one
    card per order); released / assignment_timed_out post a new card, the order being back in the pool (older
    ones lose their buttons); order.escalated edits the cards and posts one to support; every other event
    edits the cards."""
    if request.order is None or request.event is None:  # pragma: no cover - the schema requires both
        raise ValueError("an order card needs an order and an event")
    escalation = None
    if request.event == "order.escalated":
        escalation = EscalationChange(escalated=True, note=request.note)
    elif request.event == "order.escalation_resolved":
        escalation = EscalationChange(escalated=False, note=request.note)
    snapshot = await record_snapshot(session, view=request.order, escalation=escalation)

    if request.event in POST_EVENTS and not await _announced_before(
        session, order_id=snapshot.order_id, chat_id=chat_id, event=request.event
    ):
        card = await post_card(
            session,
            bot=bot,
            chat_id=chat_id,
            kind=MessageKind.ORDER_CARD,
            snapshot=snapshot,
            posted_for=request.event,
            delivery_id=delivery_id,
        )
        older = await refresh_cards(session, bot=bot, snapshot=snapshot)
        for failure in older.failures:  # the new card is posted: do not make the notifier post it again
            log.warning(
                "an older card of the order could not be updated",
                extra={"order_id": snapshot.order_id, "error": str(failure)[:300]},
            )
        if request.assignment is not None:
            await _tell_the_assigned_operator(
                bot, settings=settings, request=request, view=request.order, assignment=request.assignment
            )
        return "posted", [card.message_id]

    refreshed = await refresh_cards(session, bot=bot, snapshot=snapshot)
    if refreshed.failures:
        raise refreshed.failures[0]
    if request.reassignment is not None:
        await _tell_both_operators(
            bot, view=request.order, reassignment=request.reassignment, note=request.note
        )
    if request.assignment is not None:
        await _tell_the_assigned_operator(
            bot, settings=settings, request=request, view=request.order, assignment=request.assignment
        )
    if request.event == "order.escalated":
        support_chat = settings.chat_id_for("support")
        card = await post_card(
            session,
            bot=bot,
            chat_id=support_chat if support_chat is not None else chat_id,
            kind=MessageKind.ESCALATION_CARD,
            snapshot=snapshot,
            posted_for=request.event,
            delivery_id=delivery_id,
        )
        return "posted", [card.message_id]
    if not refreshed.message_ids:
        return "no_card", []
    return "edited", refreshed.message_ids
