"""The ``order``, ``order_event`` and ``idempotency_key`` tables."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from order_api.db import Base
from servicekit.db import Money, UtcDateTime


class OrderStatus(enum.StrEnum):
    AWAITING_ADDRESS = "awaiting_address"  # accepted; wallet-pool has not answered yet (allocation pending)
    QUEUED = "queued"
    AWAITING_DEPOSIT = "awaiting_deposit"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class Priority(enum.StrEnum):
    NORMAL = "normal"
    PRIORITY = "priority"
    VIP = "vip"


class PaymentOutcome(enum.StrEnum):
    """The deposit received against the amount ordered, recorded when the order completes."""

    EXACT = "exact"
    UNDERPAID = "underpaid"
    OVERPAID = "overpaid"


class AllocationState(enum.StrEnum):
    """What order-api knows of the order's deposit address in wallet-pool."""

    PENDING = "pending"  # wallet-pool has not answered yet (down or slow): the reconciler asks again
    ALLOCATED = "allocated"
    QUEUED = "queued"
    RELEASED = "released"


OPEN_WITH_ADDRESS = "deposit_address IS NOT NULL AND status IN ('awaiting_deposit', 'in_progress')"


class Order(Base):
    __tablename__ = "order"
    __table_args__ = (
        Index("ix_order_customer_status", "customer_id", "status"),
        Index("ix_order_client_ip_status", "client_ip", "status"),
        Index("ix_order_status_expires_at", "status", "expires_at"),
        Index("ix_order_created_at_id", "created_at", "id"),
        Index(
            "ix_order_allocation_pending",
            "created_at",
            postgresql_where=text("allocation_state = 'pending'"),
            sqlite_where=text("allocation_state = 'pending'"),
        ),
        # Orders whose order.created has not gone out: only those in intake, or left by a crash mid-intake.
        Index(
            "ix_order_unannounced",
            "created_at",
            postgresql_where=text("announced_at IS NULL"),
            sqlite_where=text("announced_at IS NULL"),
        ),
        # One open order per deposit address: wallet-pool handing out an address twice at once is refused.
        Index(
            "uq_order_open_deposit_address",
            "deposit_address",
            unique=True,
            postgresql_where=text(OPEN_WITH_ADDRESS),
            sqlite_where=text(OPEN_WITH_ADDRESS),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36), ForeignKey("customer.id"))
    session_id: Mapped[str | None] = mapped_column(String(36))
    from_currency: Mapped[str] = mapped_column(String(10))
    from_network: Mapped[str] = mapped_column(String(16))
    to_currency: Mapped[str] = mapped_column(String(10))
    to_network: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Money)
    payout_address_sealed: Mapped[str] = mapped_column(Text)
    locale: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(24))
    priority: Mapped[str] = mapped_column(String(16))
    allocation_state: Mapped[str] = mapped_column(String(16))
    deposit_address: Mapped[str | None] = mapped_column(String(128))
    queue_position: Mapped[int | None] = mapped_column(Integer)
    estimated_wait_seconds: Mapped[int | None] = mapped_column(Integer)
    client_ip: Mapped[str] = mapped_column(
        String(45),
        comment="The client's network as per-client limits count it: an IPv4 address, an IPv6 /64.",
    )
    mailbox_proven: Mapped[bool] = mapped_column(
        Boolean,
        default=False,
        server_default=false(),
        comment="Placed with a session proven by the emailed code: counts against the customer's own cap; "
        "otherwise against the email's cap from this client network.",
    )
    operator_id: Mapped[str | None] = mapped_column(String(36))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    address_assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    announced_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="When order.created went out (after the first answer from wallet-pool)."
    )
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The transaction record (orders.transactions): what actually moved. Hashes are public on their chains.
    deposit_tx_hash: Mapped[str | None] = mapped_column(
        String(128), comment="The customer's deposit transaction (recorded on completion or on a hold)."
    )
    deposit_amount: Mapped[Decimal | None] = mapped_column(Money, comment="What arrived, in from_currency.")
    deposit_seen_at: Mapped[datetime | None] = mapped_column(
        UtcDateTime, comment="When the deposit was seen."
    )
    payout_tx_hash: Mapped[str | None] = mapped_column(String(128), comment="The desk's payout transaction.")
    payout_amount: Mapped[Decimal | None] = mapped_column(Money, comment="What was sent, in to_currency.")
    payout_network_fee: Mapped[Decimal | None] = mapped_column(
        Money, comment="The payout's network fee in to_currency, if known."
    )
    payment_outcome: Mapped[str | None] = mapped_column(
        String(16), comment="exact, underpaid or overpaid: the deposit against the amount, on completion."
    )


class OrderEvent(Base):
    """One step of an order's story: every status change, who made it, from where, under which trace."""

    __tablename__ = "order_event"
    __table_args__ = (
        # An order's history, and its steps to one status in time order (when it was first and last taken,
        # who cancelled it: the order statistics) found through the index.
        Index("ix_order_event_order_id_to_status", "order_id", "to_status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("order.id"))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(80), comment="customer:<id>, operator:<id> or system:<worker>")
    channel: Mapped[str] = mapped_column(String(16), comment="rest, telegram or system")
    correlation_id: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdempotencyKey(Base):
    """A client's ``Idempotency-Key`` and the response it got, so a retry gets the same answer."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("owner", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(80), comment="Whose key: the email's blind index.")
    key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(
        String(36),
        comment="The order the key's request wrote (written with it, in the same transaction).",
    )
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_sealed: Mapped[str | None] = mapped_column(
        Text, comment="The response, encrypted: it holds a token."
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
