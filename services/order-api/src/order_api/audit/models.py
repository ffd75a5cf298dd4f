"""The ``audit_log`` table, its one-row ``audit_chain_head`` and the signed ``audit_checkpoint`` rows.

Rows are never updated or deleted: on PostgreSQL a trigger (migration 0004) refuses ``UPDATE``, ``DELETE``
and ``TRUNCATE``, and the service's runtime role may only ``INSERT`` and ``SELECT`` (it does not own the
table, so it cannot disable the trigger either); on SQLite triggers refuse ``UPDATE`` and ``DELETE``. Each row
carries the hash of the row before it (``prev_hash``) and its own (``row_hash``), so an edit made around the
trigger is detectable. ``audit_chain_head`` holds the id and hash of the newest row: appending locks it, so
appends form one line even when many transactions append at once, and ids have no gaps (a missing id is a
deleted row). ``audit_checkpoint`` rows are written by ``python -m order_api audit-checkpoint`` with its own
credentials and signed with a key the service does not hold: whoever rewrites the log and recomputes its
chain, or cuts its tail, cannot make the chain agree with them again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from order_api.db import Base
from servicekit.db import RUNTIME_PRIVILEGES, UtcDateTime

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first row."""


class AuditLog(Base):
    """One action: who did what to which thing, through which channel, when, under which trace."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id", "id"),
        Index("ix_audit_log_actor", "actor", "id"),
        Index("ix_audit_log_occurred_at", "occurred_at"),
        {"info": {RUNTIME_PRIVILEGES: ("SELECT", "INSERT")}},
    )

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, comment="Gapless position in the chain, from 1."
    )
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(
        String(80), comment="operator:<id>, api-key:<name>, customer:<id>, system:<worker> or cli:<user>"
    )
    actor_role: Mapped[str] = mapped_column(String(16), comment="operator, support, admin, customer, system")
    action: Mapped[str] = mapped_column(String(64), comment="The event type, e.g. order.taken.")
    target_type: Mapped[str] = mapped_column(String(32), comment="order or operator")
    target_id: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(16), comment="rest, telegram, system or cli")
    correlation_id: Mapped[str | None] = mapped_column(String(32))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64), comment="sha256 of the row's canonical JSON.")


class AuditChainHead(Base):
    """The newest row of the chain (exactly one row, ``id = 1``)."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        {"info": {RUNTIME_PRIVILEGES: ("SELECT", "UPDATE")}},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(BigInteger, comment="0 while the log is empty.")
    last_hash: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditCheckpoint(Base):
    """The chain's length and newest hash at one moment, signed (HMAC-SHA256) with the checkpoint key.

    Written only by ``python -m order_api audit-checkpoint`` (the service's runtime role may only read it).
    Checkpoints are numbered from 1 without gaps and each signs the signature of the one before, so one
    taken out of the middle is found too."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = ({"info": {RUNTIME_PRIVILEGES: ("SELECT",)}},)

    id: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, comment="Gapless, from 1."
    )
    row_count: Mapped[int] = mapped_column(
        BigInteger, comment="Rows of audit_log covered: ids 1 to row_count."
    )
    head_hash: Mapped[str] = mapped_column(String(64), comment="row_hash of row row_count (genesis when 0).")
    checkpointed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    previous_signature: Mapped[str] = mapped_column(String(64), comment="signature of checkpoint id - 1.")
    signature: Mapped[str] = mapped_column(String(64), comment="HMAC-SHA256 hex of the fields above.")
