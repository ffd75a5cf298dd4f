"""Appending to the audit trail, reading it, and proving it was not edited.

A row's ``row_hash`` is the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of its fields,
``prev_hash`` included, so each row seals the whole chain before it. Appends are serialised by the
``UPDATE`` of the one-row chain head, which takes its row lock (PostgreSQL) or the write lock (SQLite)
until the appending transaction ends: the chain stays one line under concurrency, and ids stay gapless
because a rolled-back append rolls the head back too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.models import GENESIS_HASH, AuditChainHead, AuditLog
from order_api.audit.schemas import AuditEntryRead, AuditFilter, AuditPage
from servicekit.db import utcnow
from servicekit.errors import ValidationFailedError
from servicekit.telemetry import current_trace_id

CHAIN_HEAD_ID = 1
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "actor",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "parameters",
    "channel",
    "correlation_id",
    "prev_hash",
)


class AuditedActor(Protocol):
    """Who acted, as the audit trail names them (``order_api.orders.lifecycle.Actor`` is one)."""

    @property
    def label(self) -> str: ...

    @property
    def actor_role(self) -> str: ...

    @property
    def channel(self) -> str: ...


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _moment(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def row_hash(row: Mapping[str, Any]) -> str:
    """The hash a row with these fields must carry."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    fields["occurred_at"] = _moment(row["occurred_at"])
    return hashlib.sha256(canonical_json(fields).encode()).hexdigest()


async def append_audit(
    session: AsyncSession,
    *,
    actor: AuditedActor,
    action: str,
    target_type: str,
    target_id: str,
    parameters: Mapping[str, Any] | None = None,
) -> int:
    """Append one row in the caller's transaction; returns its id. The chain head stays locked until the
    transaction ends, so keep appending transactions short."""
    head = (
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .values(last_id=AuditChainHead.last_id + 1)
            .returning(AuditChainHead.last_id, AuditChainHead.last_hash)
            .execution_options(synchronize_session=False)
        )
    ).one()
    row: dict[str, Any] = {
        "id": head.last_id,
        "occurred_at": utcnow(),
        "actor": actor.label,
        "actor_role": actor.actor_role,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        # Stored exactly as hashed: whatever JSON makes of a value is what the hash covers.
        "parameters": json.loads(canonical_json(dict(parameters or {}))),
        "channel": actor.channel,
        "correlation_id": current_trace_id(),
        "prev_hash": head.last_hash,
    }
    row["row_hash"] = row_hash(row)
    await session.execute(insert(AuditLog).values(**row))
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_hash=row["row_hash"], updated_at=row["occurred_at"])
        .execution_options(synchronize_session=False)
    )
    return int(row["id"])


@dataclass(frozen=True, slots=True)
class Broken:
    """The first place the chain does not hold, and why."""

    row_id: int
    reason: str


async def verify_audit_chain(session: AsyncSession, *, batch_size: int = 1000) -> Broken | None:
    """Walk the chain from its first row: ids must follow each other, each ``prev_hash`` must be the row
    before's ``row_hash``, each ``row_hash`` must match the row's content, and the last row must be the
    one the chain head names (rows cut off the end are found too). ``None`` when all of it holds."""
    expected_id, previous_hash = 1, GENESIS_HASH
    columns = [getattr(AuditLog, name) for name in (*HASHED_FIELDS, "row_hash")]
    while True:
        rows = (
            await session.execute(
                select(*columns).where(AuditLog.id >= expected_id).order_by(AuditLog.id).limit(batch_size)
            )
        ).all()
        for row in rows:
            fields = row._asdict()
            if fields["id"] != expected_id:
                return Broken(expected_id, f"row {expected_id} is missing (the next row is {fields['id']})")
            if fields["prev_hash"] != previous_hash:
                return Broken(expected_id, "prev_hash is not the hash of the row before it")
            if row_hash(fields) != fields["row_hash"]:
                return Broken(expected_id, "the row's content does not match its row_hash")
            expected_id, previous_hash = expected_id + 1, fields["row_hash"]
        if len(rows) < batch_size:
            break
    head = (
        await session.execute(
            select(AuditChainHead.last_id, AuditChainHead.last_hash).where(AuditChainHead.id == CHAIN_HEAD_ID)
        )
    ).one_or_none()
    last_id = expected_id - 1
    if head is None:
        return Broken(last_id, "the chain head is missing")
    if head.last_id > last_id:
        return Broken(last_id + 1, f"rows {last_id + 1} to {head.last_id} are missing from the end")
    if head.last_id < last_id:
        return Broken(head.last_id + 1, "the row was not appended through the chain head")
    if head.last_hash != previous_hash:
        return Broken(last_id, "the last row's hash is not the one the chain head recorded")
    return None


async def count_audit_rows(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise ValidationFailedError.for_field("cursor", "not a cursor this API returned")
    return int(cursor)


async def list_audit(*, session: AsyncSession, query: AuditFilter) -> AuditPage:
    """Audit rows matching ``query``, newest first."""
    statement = select(AuditLog)
    if query.actor is not None:
        statement = statement.where(AuditLog.actor == query.actor)
    if query.order_id is not None:
        statement = statement.where(AuditLog.target_type == "order", AuditLog.target_id == query.order_id)
    if query.action is not None:
        statement = statement.where(AuditLog.action == query.action)
    if query.occurred_from is not None:
        statement = statement.where(AuditLog.occurred_at >= query.occurred_from)
    if query.occurred_to is not None:
        statement = statement.where(AuditLog.occurred_at < query.occurred_to)
    before = _cursor(query.cursor)
    if before is not None:
        statement = statement.where(AuditLog.id < before)
    rows = list(
        (await session.execute(statement.order_by(AuditLog.id.desc()).limit(query.limit + 1))).scalars()
    )
    page, more = rows[: query.limit], len(rows) > query.limit
    return AuditPage(
        items=[AuditEntryRead.model_validate(row, from_attributes=True) for row in page],
        next_cursor=str(page[-1].id) if more and page else None,
    )
