"""The transaction record an operator gives while completing an order from Telegram, one answer at a time.

The questions, in order: the deposit's transaction hash, the amount received (``=``: exactly the amount
ordered), the payout's transaction hash, the amount sent, and the network fee (``-``: unknown). An answer is
checked here only for its obvious shape, as a courtesy to a thumb on a phone; order-api is the authority on
what it accepts (hash formats per chain, the currency's precision) and names the field it refuses, which
sends the operator back to that question (:data:`FIELD_STEPS`).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from sqlalchemy import Delete, delete, select

from servicekit.db import Database, utcnow
from telegram_gateway.clients.order_api import OperatorOrder
from telegram_gateway.completions.models import CompletionDraft

Difference = Literal["underpaid", "overpaid"]
HASH_SHAPE = re.compile(r"^[0-9A-Za-z_-]{32,130}={0,2}$")
"""Hex (with or without ``0x``), base58 and base64url hashes alike (TON's padded with ``=``); order-api checks
the chain's format."""
EXACTLY_ORDERED = "="
FEE_UNKNOWN = "-"


class Step(enum.StrEnum):
    DEPOSIT_TX = "deposit_tx"
    RECEIVED = "received"
    PAYOUT_TX = "payout_tx"
    SENT = "sent"
    FEE = "fee"
    DECISION = "decision"  # order-api found a payment mismatch: adjusted payout, or hold for support


QUESTIONS = (Step.DEPOSIT_TX, Step.RECEIVED, Step.PAYOUT_TX, Step.SENT, Step.FEE)
FIELD_STEPS = {
    "transaction.deposit": Step.DEPOSIT_TX,
    "transaction.deposit.tx_hash": Step.DEPOSIT_TX,
    "transaction.deposit.amount": Step.RECEIVED,
    "transaction.payout": Step.PAYOUT_TX,
    "transaction.payout.tx_hash": Step.PAYOUT_TX,
    "transaction.payout.amount": Step.SENT,
    "transaction.payout.network_fee": Step.FEE,
}
"""The question to ask again when order-api refuses a field of the record."""


class AnswerInvalidError(ValueError):
    """The answer does not have the shape its question asks for; ``reason`` names the text to show."""

    def __init__(self, reason: Literal["answer_not_hash", "answer_not_amount"]) -> None:
        super().__init__(reason)
        self.reason = reason


def _amount(text: str) -> str:
    try:
        amount = Decimal(text.replace(",", "."))
    except InvalidOperation as exc:
        raise AnswerInvalidError("answer_not_amount") from exc
    if not amount.is_finite() or amount <= 0:
        raise AnswerInvalidError("answer_not_amount")
    return format(amount, "f")


def parse_answer(step: Step, text: str, *, ordered: str) -> str | None:
    """The answer to ``step`` as order-api takes it (``None``: a fee left unknown)."""
    text = text.strip()
    if step in (Step.DEPOSIT_TX, Step.PAYOUT_TX):
        if not HASH_SHAPE.match(text):
            raise AnswerInvalidError("answer_not_hash")
        return text
    if step is Step.RECEIVED and text == EXACTLY_ORDERED:
        return ordered
    if step is Step.FEE and text == FEE_UNKNOWN:
        return None
    return _amount(text)


def next_step(step: Step, answers: dict[str, Any]) -> Step | None:
    """The first question after ``step`` not answered yet (``None``: the record is whole)."""
    later = QUESTIONS[QUESTIONS.index(step) + 1 :]
    return next((question for question in later if question.value not in answers), None)


def transaction_record(answers: dict[str, Any], *, adjusted_payout: bool = False) -> dict[str, Any]:
    """``transaction`` of order-api's completion, from the answers."""
    record: dict[str, Any] = {
        "payout": {
            "tx_hash": answers[Step.PAYOUT_TX],
            "amount": answers[Step.SENT],
            "network_fee": answers.get(Step.FEE),
        },
    }
    deposit = seen_deposit(answers)
    if deposit is not None:
        record["deposit"] = deposit
    if adjusted_payout:
        record["payment_difference"] = "adjusted_payout"
    return record


def seen_deposit(answers: dict[str, Any]) -> dict[str, Any] | None:
    """The deposit the operator gave; ``None`` when a hold recorded it already (order-api reuses that one,
    its ``seen_at`` included)."""
    if Step.DEPOSIT_TX not in answers:
        return None
    return {"tx_hash": answers[Step.DEPOSIT_TX], "amount": answers[Step.RECEIVED]}


def difference_of(*, ordered: str, received: str) -> Difference:
    return "underpaid" if Decimal(received) < Decimal(ordered) else "overpaid"


def order_facts(order: OperatorOrder) -> dict[str, str]:
    """What the questions show and check of the order."""
    return order.model_dump(include={"amount", "from_currency", "from_network", "to_currency", "to_network"})


# --- drafts ---------------------------------------------------------------------------------------------


async def start_draft(
    *,
    database: Database,
    order: OperatorOrder,
    version: int,
    telegram_user_id: int,
    chat_id: int,
    lifetime: timedelta,
) -> CompletionDraft:
    """A fresh draft for the operator's completion of ``order`` (a draft begun earlier is replaced). A deposit
    recorded already (by a hold for support) is not asked again: the questions start at the payout."""
    now = utcnow()
    recorded = order.recorded_deposit_amount()
    draft = CompletionDraft(
        order_id=order.id,
        telegram_user_id=telegram_user_id,
        chat_id=chat_id,
        prompt_message_id=None,
        version=version,
        order=order_facts(order),
        step=(Step.DEPOSIT_TX if recorded is None else Step.PAYOUT_TX).value,
        answers={} if recorded is None else {Step.RECEIVED.value: recorded},
        expires_at=now + lifetime,
        updated_at=now,
    )
    async with database.sessionmaker.begin() as session:
        await session.execute(_draft_of(order_id=order.id, telegram_user_id=telegram_user_id))
        session.add(draft)
    return draft


async def find_draft(*, database: Database, order_id: str, telegram_user_id: int) -> CompletionDraft | None:
    async with database.sessionmaker() as session:
        return await session.get(CompletionDraft, (order_id, telegram_user_id))


async def drafts_of(*, database: Database, telegram_user_id: int) -> list[CompletionDraft]:
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(CompletionDraft).where(CompletionDraft.telegram_user_id == telegram_user_id)
        )
        return list(rows)


async def save_draft(*, database: Database, draft: CompletionDraft, lifetime: timedelta) -> None:
    """Keep the draft's new step and answers; the operator has ``lifetime`` again for the next answer."""
    draft.updated_at = utcnow()
    draft.expires_at = draft.updated_at + lifetime
    async with database.sessionmaker.begin() as session:
        await session.merge(draft)


def _draft_of(*, order_id: str, telegram_user_id: int) -> Delete:
    return delete(CompletionDraft).where(
        CompletionDraft.order_id == order_id, CompletionDraft.telegram_user_id == telegram_user_id
    )


async def forget_draft(*, database: Database, order_id: str, telegram_user_id: int) -> None:
    async with database.sessionmaker.begin() as session:
        await session.execute(_draft_of(order_id=order_id, telegram_user_id=telegram_user_id))


def expired(draft: CompletionDraft, *, now: datetime | None = None) -> bool:
    return (now or utcnow()) >= draft.expires_at
