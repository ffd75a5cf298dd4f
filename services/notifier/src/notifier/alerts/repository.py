"""The alerts' queries: the live alert of a key (locked), the insert that keeps one live alert per key, keyset
pages, the alert worker's claims (``FOR UPDATE SKIP LOCKED``) and its conditional updates, and the gauge's
aggregate. Repositories only execute; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.alerts.models import LIVE, Alert, AlertStatus, Severity
from notifier.alerts.schemas import AlertFilter
from servicekit.db import try_insert
from servicekit.pagination import Keyset

NEWEST_FIRST = Keyset("alerts", Alert.raised_at, Alert.id, newest_first=True)
"""Alerts as listed: newest first, by when they were first raised."""


async def live_alert(session: AsyncSession, *, key: str) -> Alert | None:
    """The open or acknowledged alert of ``key``, locked."""
    alert: Alert | None = await session.scalar(
        select(Alert)
        .where(Alert.key == key, Alert.status != AlertStatus.resolved.value)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return alert


async def recently_resolved(session: AsyncSession, *, key: str, since: datetime) -> Alert | None:
    """The latest alert of ``key`` resolved at or after ``since``, locked."""
    alert: Alert | None = await session.scalar(
        select(Alert)
        .where(Alert.key == key, Alert.status == AlertStatus.resolved.value, Alert.resolved_at >= since)
        .order_by(Alert.resolved_at.desc())
        .limit(1)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return alert


async def alert_page(
    session: AsyncSession,
    *,
    filters: AlertFilter,
    cursor: str | None,
    limit: int,
) -> Sequence[Alert]:
    """The page of alerts matching the filters after ``cursor`` (and the first row of the next, for
    :meth:`Keyset.cut`), newest first."""
    query = select(Alert)
    if filters.status is not None:
        query = query.where(Alert.status == filters.status.value)
    if filters.severity is not None:
        query = query.where(Alert.severity == filters.severity.value)
    if filters.key is not None:
        query = query.where(Alert.key == filters.key)
    return (await session.scalars(NEWEST_FIRST.select(query, cursor=cursor, limit=limit))).all()


async def insert_live_alert(session: AsyncSession, *, values: Mapping[str, Any]) -> bool:
    """Insert a live alert; ``False`` when another transaction holds the key's live alert already (the
    partial unique index on live alerts)."""
    # The literal predicate of the partial index, so PostgreSQL infers it as the arbiter.
    return await try_insert(session, Alert, values, conflict=["key"], where=text(LIVE))


async def claim_due_escalations(
    session: AsyncSession, *, now: datetime, delays: Mapping[Severity, timedelta], limit: int
) -> list[Alert]:
    """Up to ``limit`` open alerts that waited their severity's delay (``delays``) since they last escalated,
    longest waiting first, locked (``SKIP LOCKED``: replicas take different ones)."""
    due = or_(
        *(
            and_(Alert.severity == severity.value, Alert.escalated_at <= now - delay)
            for severity, delay in delays.items()
        )
    )
    return list(
        (
            await session.scalars(
                select(Alert)
                .where(Alert.status == AlertStatus.open.value, due)
                .order_by(Alert.escalated_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )


async def claim_live(session: AsyncSession, *, source: str, limit: int) -> list[Alert]:
    """Up to ``limit`` live alerts of ``source``, least recently changed first, locked (``SKIP LOCKED``:
    replicas take different ones)."""
    return list(
        (
            await session.scalars(
                select(Alert)
                .where(Alert.source == source, text(LIVE))
                .order_by(Alert.updated_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )


async def touch_if_unchanged(
    session: AsyncSession, *, alert_id: str, updated_at_was: datetime, now: datetime
) -> bool:
    """Claim the alert for a change only if nothing touched it since it was read (still live, same
    ``updated_at``): two replicas, or two in-process workers on SQLite, never apply one change twice."""
    return await _update_if_still(
        session,
        alert_id=alert_id,
        still=and_(text(LIVE), Alert.updated_at == updated_at_was),
        updated_at=now,
    )


async def claim_settled_resolutions(
    session: AsyncSession, *, resolved_before: datetime, limit: int
) -> list[Alert]:
    """Up to ``limit`` alerts resolved at or before ``resolved_before`` whose resolution nobody was told yet,
    oldest first, locked (``SKIP LOCKED``)."""
    return list(
        (
            await session.scalars(
                select(Alert)
                .where(
                    Alert.status == AlertStatus.resolved.value,
                    Alert.resolution_notified_at.is_(None),
                    Alert.resolved_at <= resolved_before,
                )
                .order_by(Alert.resolved_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )


async def _update_if_still(
    session: AsyncSession, *, alert_id: str, still: ColumnElement[bool], **values: object
) -> bool:
    result = await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, still)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def escalate_if_unchanged(
    session: AsyncSession, *, alert_id: str, severity_was: Severity, severity: Severity, now: datetime
) -> bool:
    """Raise the alert to ``severity`` only if it is still open at ``severity_was``."""
    return await _update_if_still(
        session,
        alert_id=alert_id,
        still=and_(Alert.status == AlertStatus.open.value, Alert.severity == severity_was.value),
        severity=severity.value,
        escalated_at=now,
        updated_at=now,
    )


async def mark_resolution_told(session: AsyncSession, *, alert_id: str, now: datetime) -> bool:
    """Record that the resolution is told, only if it is still resolved and untold."""
    return await _update_if_still(
        session,
        alert_id=alert_id,
        still=and_(Alert.status == AlertStatus.resolved.value, Alert.resolution_notified_at.is_(None)),
        resolution_notified_at=now,
    )


async def live_counts(session: AsyncSession) -> dict[tuple[str, str], int]:
    """Open and acknowledged alerts by (status, severity)."""
    rows = (
        await session.execute(
            select(Alert.status, Alert.severity, func.count())
            .where(Alert.status != AlertStatus.resolved.value)
            .group_by(Alert.status, Alert.severity)
        )
    ).all()
    return {(status, severity): int(count) for status, severity, count in rows}
