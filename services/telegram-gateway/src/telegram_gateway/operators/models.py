"""``operator_link``: the Telegram users the gateway acts for, and the operator each one is."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from servicekit.db import UtcDateTime
from telegram_gateway.db import Base


class OperatorLink(Base):
    """A Telegram user linked to an operator with a one-time code (``/start <code>``). Only linked users
    reach order-api; order-api stays the authority (an unlinked or deactivated operator is refused there)."""

    __tablename__ = "operator_link"

    telegram_user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operator_id: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), comment="operator, support or admin (as order-api said).")
    telegram_username: Mapped[str | None] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(UtcDateTime)
