"""The notification queue's queries: the insert that makes one notification per event and recipient, keyset
pages, the delivery worker's claim (``FOR UPDATE SKIP LOCKED`` + a lease) and its record of each attempt, the
queue's aggregate figures and an erasure's bulk updates. Repositories only execute; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.notifications.models import Channel, DeliveryAttempt, Notification, NotificationStatus
from servicekit.db import try_insert
from servicekit.pagination import Keyset

NEWEST_FIRST = Keyset("notifications", Notification.created_at, Notification.id, newest_first=True)

GIVEN_UP = (NotificationStatus.dead.value, NotificationStatus.failed.value)
"""What ``notifier_delivery_queue_dead`` counts: dead-lettered or failed for good, waiting for a redeliver."""


async def insert_notification(session: AsyncSession, *, values: Mapping[str, Any]) -> bool:
    """Insert the notification; ``False`` when nothing was inserted."""
    # One notification per event, template and recipient (a redelivered event); without an event (NULL) the
    # unique constraint never matches, so the row is always inserted.
    return await try_insert(
        session, Notification, values, conflict=["event_id", "template", "recipient_index"]
    )


async def notification_of_event(
    session: AsyncSession, *, event_id: str | None, template: str, recipient_index: str
) -> str | None:
    """The id of the notification queued for this event, template and recipient."""
    existing: str | None = await session.scalar(
        select(Notification.id).where(
            Notification.event_id == event_id,
            Notification.template == template,
            Notification.recipient_index == recipient_index,
        )
    )
    return existing


async def emails_of_order(session: AsyncSession, *, order_id: str) -> Sequence[tuple[str, str | None]]:
    """``(template, variables_sealed)`` of the order's emails queued so far, oldest first."""
    rows = await session.execute(
        select(Notification.template, Notification.variables_sealed)
        .where(Notification.order_id == order_id, Notification.channel == Channel.email.value)
        .order_by(Notification.created_at, Notification.id)
    )
    return rows.tuples().all()


async def notification_page(
    session: AsyncSession,
    *,
    order_id: str | None,
    channel: Channel | None,
    status: NotificationStatus | None,
    cursor: str | None,
    limit: int,
) -> Sequence[Notification]:
    """The page of notifications matching the filters after ``cursor`` (and the first row of the next, for
    :meth:`Keyset.cut`), newest first."""
    query = select(Notification)
    if order_id is not None:
        query = query.where(Notification.order_id == order_id)
    if channel is not None:
        query = query.where(Notification.channel == channel.value)
    if status is not None:
        query = query.where(Notification.status == status.value)
    return (await session.scalars(NEWEST_FIRST.select(query, cursor=cursor, limit=limit))).all()


async def anonymise_customer(session: AsyncSession, *, customer_id: str) -> int:
    """Drop what names the customer from their notifications (see ``service.erase_customer``); returns how
    many were anonymised."""
    about = select(Notification.id).where(Notification.customer_id == customer_id).scalar_subquery()
    await session.execute(
        update(DeliveryAttempt)
        .where(DeliveryAttempt.notification_id.in_(about), DeliveryAttempt.error.is_not(None))
        .values(error=None)
        .execution_options(synchronize_session=False)
    )
    anonymised = {
        "recipient_sealed": None,
        "recipient_index": None,
        "variables_sealed": None,
        "last_error": None,
    }
    n = Notification
    await session.execute(
        update(n)
        .where(n.customer_id == customer_id, n.status == NotificationStatus.pending.value)
        .values(status=NotificationStatus.failed.value)
        .execution_options(synchronize_session=False)
    )
    result = await session.execute(
        update(n)
        .where(n.customer_id == customer_id, n.recipient_sealed.is_not(None))
        .values(**anonymised)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- the delivery worker ------------------------------------------------------------------------------------


async def claim_due(
    session: AsyncSession, *, channel: Channel, now: datetime, lease_seconds: float, limit: int
) -> Sequence[Row[Any]]:
    """Lease up to ``limit`` due notifications of ``channel`` (not erased), soonest due first: rows locked
    by another worker are skipped (``FOR UPDATE SKIP LOCKED``) and the lease moves ``next_attempt_at`` on, so
    replicas share the queue. Returns ``(id, template, locale, recipient_sealed, variables_sealed, attempts,
    traceparent, order_id, created_at)``, oldest queued first."""
    n = Notification
    due = (
        select(n.id)
        .where(
            n.status == NotificationStatus.pending.value,
            n.channel == channel.value,
            n.next_attempt_at <= now,
            n.recipient_sealed.is_not(None),
            n.variables_sealed.is_not(None),
        )
        .order_by(n.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    claim = (
        update(n)
        .where(n.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        .returning(
            n.id,
            n.template,
            n.locale,
            n.recipient_sealed,
            n.variables_sealed,
            n.attempts,
            n.traceparent,
            n.order_id,
            n.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(claim)).all()
    return sorted(rows, key=lambda row: (row.created_at, row.id))  # RETURNING keeps no order


async def record_attempt(
    session: AsyncSession,
    *,
    notification_id: str,
    provider: str,
    outcome: str,
    error: str | None,
    duration_ms: int,
    started_at: datetime,
    changes: Mapping[str, Any],
    response_status: int | None = None,
) -> None:
    """Add the notification's next ``delivery_attempt`` row and apply ``changes`` to the notification."""
    previous = await session.scalar(
        select(func.count())
        .select_from(DeliveryAttempt)
        .where(DeliveryAttempt.notification_id == notification_id)
    )
    await session.execute(
        insert(DeliveryAttempt).values(
            notification_id=notification_id,
            attempt=int(previous or 0) + 1,
            provider=provider,
            outcome=outcome,
            error=error,
            duration_ms=duration_ms,
            started_at=started_at,
            response_status=response_status,
        )
    )
    await session.execute(
        update(Notification)
        .where(Notification.id == notification_id)
        .values(**changes)
        .execution_options(synchronize_session=False)
    )


async def put_off(session: AsyncSession, *, notification_ids: Sequence[str], until: datetime) -> None:
    """Move the next attempt of still pending ``notification_ids`` to ``until`` (a lease given back early, or
    a thread's later messages kept behind an earlier one being retried)."""
    if not notification_ids:
        return
    await session.execute(
        update(Notification)
        .where(
            Notification.id.in_(notification_ids),
            Notification.status == NotificationStatus.pending.value,
        )
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )


async def queue_counts(session: AsyncSession) -> Sequence[Row[Any]]:
    """``(channel, pending, count, oldest created_at)`` of pending and given-up notifications: one aggregate
    statement (off ``ix_notification_due``, whose first column is the status)."""
    n = Notification
    pending = n.status == NotificationStatus.pending.value
    statement = (
        select(n.channel, pending.label("pending"), func.count(), func.min(n.created_at))
        .where(n.status.in_([NotificationStatus.pending.value, *GIVEN_UP]))
        .group_by(n.channel, pending)
    )
    return (await session.execute(statement)).all()
