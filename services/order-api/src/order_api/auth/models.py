"""The ``customer_session`` and ``email_code`` tables."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from order_api.db import Base
from servicekit.db import UtcDateTime, utcnow


def new_id() -> str:
    return str(uuid.uuid4())


class CustomerSession(Base):
    """A customer's session. The token is shown once; only its SHA-256 is kept (``token_hash``): tokens are
    256-bit random, so a fast hash is enough and a database dump yields no usable token.

    ``kind = 'order'`` sessions come with an order and reach that order only (``order_id``);
    ``kind = 'full'`` sessions are proven by an emailed code and reach all of the customer's orders."""

    __tablename__ = "customer_session"
    __table_args__ = (
        CheckConstraint("kind IN ('order', 'full')", name="kind_known"),
        CheckConstraint("(kind = 'order') = (order_id IS NOT NULL)", name="order_scope"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("customer.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, comment="sha256 hex of the token.")
    kind: Mapped[str] = mapped_column(String(8))
    order_id: Mapped[str | None] = mapped_column(
        String(36), comment="The one order an order session reaches."
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class EmailCode(Base):
    """A one-time code sent to a customer's mailbox. Only an HMAC of it is kept (``code_hash``, keyed with the
    blind-index key, which is not in the database): a 6-digit code hashed with a salt stored beside it would
    fall to a million guesses offline; keyed, a stolen table is useless without the key."""

    __tablename__ = "email_code"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    email_index: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    consumed_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="Used, superseded by a newer code, or out of attempts."
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
