"""The audit trail's queries: the chain head's row lock that serialises appends, keyset walks over the chain,
checkpoints and filtered pages. Repositories only execute; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.models import AuditChainHead, AuditCheckpoint, AuditLog
from order_api.audit.schemas import AuditFilter
from servicekit.pagination import Keyset

CHAIN_HEAD_ID = 1
NEWEST_FIRST = Keyset("audit", AuditLog.id, newest_first=True)
"""The audit trail as read: by id, which is the order rows were appended in."""


async def advance_chain_head(session: AsyncSession) -> Row[Any]:
    """Count one more row on the chain head and return ``(last_id, last_hash)``: the new row's id and the hash
    it follows. The head stays locked until the transaction ends, which serialises appends."""
    return (
        await session.execute(
            update(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .values(last_id=AuditChainHead.last_id + 1)
            .returning(AuditChainHead.last_id, AuditChainHead.last_hash)
            .execution_options(synchronize_session=False)
        )
    ).one()


async def insert_audit_row(session: AsyncSession, *, row: Mapping[str, Any]) -> None:
    await session.execute(insert(AuditLog).values(**row))


async def record_chain_hash(session: AsyncSession, *, last_hash: str, updated_at: datetime) -> None:
    """The chain head names the hash of the row just appended."""
    await session.execute(
        update(AuditChainHead)
        .where(AuditChainHead.id == CHAIN_HEAD_ID)
        .values(last_hash=last_hash, updated_at=updated_at)
        .execution_options(synchronize_session=False)
    )


async def chain_head(session: AsyncSession) -> Row[Any] | None:
    """``(last_id, last_hash)`` of the chain head, if it exists."""
    return (
        await session.execute(
            select(AuditChainHead.last_id, AuditChainHead.last_hash).where(AuditChainHead.id == CHAIN_HEAD_ID)
        )
    ).one_or_none()


async def chain_rows(
    session: AsyncSession, *, fields: Sequence[str], from_id: int, limit: int
) -> Sequence[Row[Any]]:
    """Up to ``limit`` rows (their ``fields``) from id ``from_id`` on, in chain order: a keyset walk."""
    columns = [getattr(AuditLog, name) for name in fields]
    return (
        await session.execute(
            select(*columns).where(AuditLog.id >= from_id).order_by(AuditLog.id).limit(limit)
        )
    ).all()


async def all_checkpoints(session: AsyncSession) -> list[AuditCheckpoint]:
    """Every checkpoint, oldest first."""
    return list((await session.execute(select(AuditCheckpoint).order_by(AuditCheckpoint.id))).scalars())


async def audit_page(session: AsyncSession, *, query: AuditFilter) -> Sequence[AuditLog]:
    """The page of rows matching ``query`` after its cursor (and the first row of the next, for
    :meth:`Keyset.cut`), newest first."""
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
    return (
        await session.scalars(NEWEST_FIRST.select(statement, cursor=query.cursor, limit=query.limit))
    ).all()
