"""The ``operator``, ``telegram_link_code``, ``escalation`` and ``escalation_comment`` tables, and the indexes of ``order`` that the
operator workflow reads by."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from order_api.db import Base
from order_api.orders.models import Order, OrderEvent
from servicekit.db import UtcDateTime


def new_id() -> str:
    return str(uuid.uuid4())


class OperatorRole(enum.StrEnum):
    OPERATOR = "operator"  # takes orders and drives them
    SUPPORT = "support"  # answers escalations
    ADMIN = "admin"  # everything, including managing operators and reading the audit trail


class Presence(enum.StrEnum):
    AVAILABLE = "available"  # at the desk
    AWAY = "away"  # not taking new work (still drives the orders they hold)


class Operator(Base):
    """A member of staff. Their personal token is shown once; only its SHA-256 is kept (``token_hash``).
    ``telegram_user_id`` links them to the Telegram account the gateway acts for. ``max_held_orders`` caps
    the orders they hold at once (null: ``ORDER_API_OPERATOR_MAX_HELD_ORDERS``); ``presence`` is whether
    they are at the desk, since ``presence_since``."""

    __tablename__ = "operator"
    __table_args__ = (
        CheckConstraint("role IN ('operator', 'support', 'admin')", name="role_known"),
        CheckConstraint("presence IN ('available', 'away')", name="presence_known"),
        CheckConstraint("max_held_orders IS NULL OR max_held_orders >= 1", name="max_held_orders_positive"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    telegram_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    token_hash: Mapped[str | None] = mapped_column(
        String(64), unique=True, comment="sha256 hex of the personal token; null when none was issued."
    )
    token_issued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    token_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, comment="Null: no expiry.")
    token_revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    max_held_orders: Mapped[int | None] = mapped_column(
        Integer, comment="Null: the desk's default cap (ORDER_API_OPERATOR_MAX_HELD_ORDERS)."
    )
    presence: Mapped[str] = mapped_column(
        String(16), default=Presence.AVAILABLE.value, server_default=Presence.AVAILABLE.value
    )
    presence_since: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="When presence last changed; null: never set (available since created)."
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TelegramLinkCode(Base):
    """A one-time code an admin issues so an operator can link their Telegram account (``/start <code>`` to
    the bot). Only an HMAC of the code is kept (``code_hash``, keyed with the blind-index key, which is not
    in the database), so a stolen table yields no usable code. At most one unconsumed code per operator."""

    __tablename__ = "telegram_link_code"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    operator_id: Mapped[str] = mapped_column(String(36), ForeignKey("operator.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str] = mapped_column(String(80), comment="Actor label, e.g. operator:<id>.")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="Used, or superseded by a newer code."
    )
    telegram_user_id: Mapped[int | None] = mapped_column(
        BigInteger, comment="The Telegram user who used the code; null while unused or when superseded."
    )


class EscalationStatus(enum.StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Escalation(Base):
    """Support pulled into an order: a flag on the order (not a status) with a comment thread. An order has
    at most one open escalation."""

    __tablename__ = "escalation"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        Index(
            "uq_escalation_open_order",
            "order_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
            sqlite_where=text("status = 'open'"),
        ),
        Index("ix_escalation_status_raised_at", "status", "raised_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("order.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    raised_by: Mapped[str] = mapped_column(String(80), comment="Actor label, e.g. operator:<id>.")
    raised_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    comments: Mapped[list[EscalationComment]] = relationship(
        order_by="EscalationComment.id", lazy="raise", cascade="all"
    )


class EscalationComment(Base):
    """One message of an escalation's thread (the first is the reason it was raised)."""

    __tablename__ = "escalation_comment"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    escalation_id: Mapped[str] = mapped_column(String(36), ForeignKey("escalation.id"), index=True)
    author: Mapped[str] = mapped_column(String(80), comment="Actor label, e.g. operator:<id>.")
    author_name: Mapped[str] = mapped_column(String(100))
    author_role: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


# The operator workflow reads ``order`` by status in arrival order (the takeable list), by holder (my orders,
# stats, load) and by deposit address (the address's previous orders).
Index("ix_order_status_created_at_id", Order.status, Order.created_at, Order.id)
Index("ix_order_operator_status", Order.operator_id, Order.status)
Index("ix_order_deposit_address", Order.deposit_address)


class AssignmentOutcome(enum.StrEnum):
    ACCEPTED = "accepted"  # the operator accepted it, or acted on the order, in time
    LAPSED = "lapsed"  # untouched until ``lapses_at``: back in the pool
    ENDED = "ended"  # the order left the operator otherwise (reassigned, closed ...) before it lapsed


class OrderAssignment(Base):
    """One auto-assignment of an order to an operator (``operators.assignment``). Pending while ``outcome``
    is null; at most one per order and operator, so an order is never auto-assigned twice to the same
    operator."""

    __tablename__ = "order_assignment"
    __table_args__ = (
        CheckConstraint(
            "outcome IS NULL OR outcome IN ('accepted', 'lapsed', 'ended')", name="outcome_known"
        ),
        UniqueConstraint("order_id", "operator_id"),
        Index(
            "ix_order_assignment_pending_lapses_at",
            "lapses_at",
            postgresql_where=text("outcome IS NULL"),
            sqlite_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("order.id"))
    operator_id: Mapped[str] = mapped_column(String(36), ForeignKey("operator.id"))
    assigned_at: Mapped[datetime] = mapped_column(UtcDateTime)
    lapses_at: Mapped[datetime] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# Auto-assignment reads when each operator last acted on any order (their idle time) by the actor of the
# order's history, operators' steps only (intake's steps are not indexed, so intake writes no more).
Index(
    "ix_order_event_operator_actor_created_at",
    OrderEvent.actor,
    OrderEvent.created_at,
    postgresql_where=text("actor LIKE 'operator:%'"),
    sqlite_where=text("actor LIKE 'operator:%'"),
)
