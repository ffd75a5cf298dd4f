"""Keeping order cards true: the newest snapshot per order, and the Telegram messages that show it.

Both paths that learn about an order go through here: the notifier's ``POST /v1/messages`` and the bot's
own calls to order-api (a Take answered by order-api). Each takes the order's snapshot row first and holds
it for its transaction (an upsert locks it, on PostgreSQL and SQLite alike), so two paths never edit the
same cards at once, and a card is edited only when what it would show differs from what it shows: the
notifier's ``order.taken`` that follows a Take the bot already showed edits nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiogram import Bot
from aiogram.exceptions import AiogramError
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import Database, utcnow
from telegram_gateway.bot.errors import is_message_gone, is_not_modified, is_transient
from telegram_gateway.cards import repository
from telegram_gateway.cards.models import MessageKind, OrderSnapshot, PostedMessage
from telegram_gateway.cards.render import Card, escalation_card, order_card
from telegram_gateway.cards.schemas import OrderView

log = logging.getLogger("telegram_gateway.cards")


@dataclass(frozen=True, slots=True)
class EscalationChange:
    """An escalation raised (``note``: why) or resolved (``note``: how), or order-api's ``escalated`` flag
    (no note); applied unless the snapshot already holds a newer version of the order."""

    escalated: bool
    note: str | None = None


@dataclass(slots=True)
class RefreshResult:
    message_ids: list[int] = field(default_factory=list)
    failures: list[AiogramError] = field(default_factory=list)


def view_of(snapshot: OrderSnapshot) -> OrderView:
    return OrderView.model_validate(snapshot.order)


async def record_snapshot(
    session: AsyncSession, *, view: OrderView, escalation: EscalationChange | None = None
) -> OrderSnapshot:
    """Keep ``view`` if it is newer than what is known; return the order's snapshot, locked for this
    transaction."""
    snapshot = await repository.locked_snapshot(
        session,
        order_id=view.order_id,
        version=view.version,
        order=view.model_dump(mode="json"),
        now=utcnow(),
    )
    known = snapshot.version
    if view.version > known:
        snapshot.version = view.version
        snapshot.order = view.model_dump(mode="json")
    if escalation is not None and view.version >= known:
        _apply_escalation(snapshot, escalation)
    await session.flush()
    return snapshot


def _apply_escalation(snapshot: OrderSnapshot, change: EscalationChange) -> None:
    """A new escalation replaces the last one's reason; a change without a note (order-api's ``escalated``
    flag on an order it returned) keeps the notes already known."""
    if change.escalated and not snapshot.escalated:
        snapshot.escalation_note, snapshot.resolution_note = change.note, None
    elif change.escalated and change.note:
        snapshot.escalation_note = change.note
    elif not change.escalated and change.note:
        snapshot.resolution_note = change.note
    snapshot.escalated = change.escalated


def render(card: PostedMessage, snapshot: OrderSnapshot, *, superseded: bool = False) -> Card:
    view = view_of(snapshot)
    if card.kind == MessageKind.ESCALATION_CARD:
        return escalation_card(
            view,
            escalated=snapshot.escalated,
            escalation_note=snapshot.escalation_note,
            resolution_note=snapshot.resolution_note,
        )
    return order_card(
        view,
        escalated=snapshot.escalated,
        escalation_note=snapshot.escalation_note,
        posted_for=card.posted_for,
        superseded=superseded,
    )


def _superseded(cards: list[PostedMessage]) -> set[int]:
    """Ids of cards with a newer card of the same kind for the same order in the same chat."""
    newest: dict[tuple[int, str], int] = {}
    for card in cards:
        newest[(card.chat_id, card.kind)] = card.id
    return {card.id for card in cards if newest[(card.chat_id, card.kind)] != card.id}


async def refresh_cards(session: AsyncSession, *, bot: Bot, snapshot: OrderSnapshot) -> RefreshResult:
    """Edit every card of the order that does not show its snapshot. Telegram's "message is not modified"
    is success; a deleted message drops its card; a transient failure stops the pass (the rest would fail
    too, and a flood limit must not be pushed further) and is returned with any other failure."""
    result = RefreshResult()
    cards = await repository.cards_of_order(session, order_id=snapshot.order_id)
    superseded = _superseded(cards)
    for card in cards:
        wanted = render(card, snapshot, superseded=card.id in superseded)
        if card.rendered_digest != wanted.digest:
            try:
                await bot.edit_message_text(
                    chat_id=card.chat_id,
                    message_id=card.message_id,
                    text=wanted.text,
                    reply_markup=wanted.keyboard,
                )
            except AiogramError as error:
                if is_message_gone(error):
                    log.warning(
                        "card is gone from Telegram; forgetting it",
                        extra={
                            "order_id": card.order_id,
                            "chat_id": card.chat_id,
                            "message_id": card.message_id,
                        },
                    )
                    await session.delete(card)
                    continue
                if not is_not_modified(error):
                    result.failures.append(error)
                    if is_transient(error):
                        break
                    continue
            card.rendered_digest = wanted.digest
            card.rendered_version = snapshot.version
            card.edited_at = utcnow()
        result.message_ids.append(card.message_id)
    await session.flush()
    return result


async def post_card(
    session: AsyncSession,
    *,
    bot: Bot,
    chat_id: int,
    kind: MessageKind,
    snapshot: OrderSnapshot,
    posted_for: str,
    delivery_id: str | None,
) -> PostedMessage:
    """Post a new card for the order to ``chat_id`` and remember it (Bot API errors propagate)."""
    card = PostedMessage(
        chat_id=chat_id,
        kind=kind.value,
        order_id=snapshot.order_id,
        posted_for=posted_for,
        delivery_id=delivery_id,
    )
    wanted = render(card, snapshot)
    message = await bot.send_message(chat_id=chat_id, text=wanted.text, reply_markup=wanted.keyboard)
    card.message_id = message.message_id
    card.rendered_digest = wanted.digest
    card.rendered_version = snapshot.version
    card.posted_at = utcnow()
    session.add(card)
    await session.flush()
    return card


async def show_order_state(
    *, database: Database, bot: Bot, view: OrderView, escalation: EscalationChange | None = None
) -> RefreshResult:
    """What order-api just answered (a Take, a status change), shown on every card of the order at once."""
    async with database.sessionmaker.begin() as session:
        snapshot = await record_snapshot(session, view=view, escalation=escalation)
        result = await refresh_cards(session, bot=bot, snapshot=snapshot)
    for failure in result.failures:
        log.warning(
            "a card could not be updated; the notifier's next message for the order retries it",
            extra={"order_id": view.order_id, "error": str(failure)[:300]},
        )
    return result
