"""``completion_draft``: the answers an operator has given so far while completing an order from Telegram.

Kept in the gateway's database, not in a process: the next reply may reach any replica (webhook mode), or
the gateway after a restart."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from telegram_gateway.db import Base


class CompletionDraft(Base):
    """One operator completing one order: the question awaiting a reply (``step``, asked in message
    ``prompt_message_id`` of ``chat_id``) and the answers so far. A reply to any other message, from anyone
    else, or after ``expires_at`` completes nothing."""

    __tablename__ = "completion_draft"

    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    prompt_message_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="The bot's question awaiting the reply; replies to any other message are ignored."
    )
    version: Mapped[int] = mapped_column(Integer, comment="The order's version the Complete button showed.")
    order: Mapped[dict[str, Any]] = mapped_column(
        JSON, comment="What the questions show and check: amount, currencies and networks."
    )
    step: Mapped[str] = mapped_column(String(16), comment="The question awaiting its answer.")
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, comment="Answers given so far, by step.")
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_completion_draft_expires_at", "expires_at"),)
