"""The ``customer`` table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from order_api.db import Base
from servicekit.db import UtcDateTime, utcnow

CUSTOMER_ROLE = "customer"


def new_customer_id() -> str:
    return str(uuid.uuid4())


ERASED_EMAIL_SEALED = ""
"""``email_sealed`` of an erased customer: nothing to open."""


def erased_email_index(customer_id: str) -> str:
    """``email_index`` of an erased customer: unique, and never the blind index of any email (not hex)."""
    return f"erased:{customer_id}"


class Customer(Base):
    """Someone who ordered. The email is kept only sealed (``email_sealed``) and found through its keyed
    blind index (``email_index``, unique: one customer per mailbox). An erased customer (``erased_at``)
    keeps the row, for their orders, with neither."""

    __tablename__ = "customer"
    __table_args__ = (CheckConstraint("role IN ('customer')", name="role_known"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_customer_id)
    email_sealed: Mapped[str] = mapped_column(Text, comment="AES-GCM sealed email (context customer.email).")
    email_index: Mapped[str] = mapped_column(
        String(64), unique=True, comment="HMAC-SHA256 of the normalised email (blind index)."
    )
    locale: Mapped[str] = mapped_column(String(8), default="en", server_default="en")
    role: Mapped[str] = mapped_column(String(16), default=CUSTOMER_ROLE, server_default=CUSTOMER_ROLE)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    completed_orders: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    erased_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="When the customer was erased: email, payout addresses and sessions gone."
    )
