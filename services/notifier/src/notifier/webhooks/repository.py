"""The webhook endpoints' queries: their keyset page, the enabled ones, an endpoint's delivery log (its
notifications on the ``webhook`` channel, with each one's last attempt). Repositories only execute."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.notifications.models import Channel, DeliveryAttempt, Notification
from notifier.webhooks.models import WebhookEndpoint
from servicekit.pagination import Keyset

ENDPOINTS_NEWEST_FIRST = Keyset(
    "webhook_endpoints", WebhookEndpoint.created_at, WebhookEndpoint.id, newest_first=True
)
DELIVERIES_NEWEST_FIRST = Keyset(
    "webhook_deliveries", Notification.created_at, Notification.id, newest_first=True
)


async def endpoint_page(
    session: AsyncSession, *, cursor: str | None, limit: int
) -> Sequence[WebhookEndpoint]:
    query = ENDPOINTS_NEWEST_FIRST.select(select(WebhookEndpoint), cursor=cursor, limit=limit)
    return (await session.scalars(query)).all()


async def enabled_endpoints(session: AsyncSession) -> Sequence[WebhookEndpoint]:
    """Every enabled endpoint (a desk has a handful), oldest first."""
    query = (
        select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)).order_by(WebhookEndpoint.created_at)
    )
    return (await session.scalars(query)).all()


async def delivery_page(
    session: AsyncSession, *, recipient_index: str, cursor: str | None, limit: int
) -> Sequence[Notification]:
    """The endpoint's deliveries (``recipient_index``: its id's blind index) after ``cursor``, newest first
    (off ``ix_notification_webhook_log``)."""
    query = select(Notification).where(
        Notification.channel == Channel.webhook.value, Notification.recipient_index == recipient_index
    )
    return (await session.scalars(DELIVERIES_NEWEST_FIRST.select(query, cursor=cursor, limit=limit))).all()


async def delivery(session: AsyncSession, *, recipient_index: str, delivery_id: str) -> Notification | None:
    """The endpoint's delivery, locked for update."""
    query = (
        select(Notification)
        .where(
            Notification.id == delivery_id,
            Notification.channel == Channel.webhook.value,
            Notification.recipient_index == recipient_index,
        )
        .with_for_update()
    )
    found: Notification | None = await session.scalar(query)
    return found


async def last_attempts(session: AsyncSession, *, delivery_ids: Sequence[str]) -> dict[str, DeliveryAttempt]:
    """The last attempt of each delivery that has one."""
    if not delivery_ids:
        return {}
    rows = await session.scalars(
        select(DeliveryAttempt)
        .where(DeliveryAttempt.notification_id.in_(delivery_ids))
        .order_by(DeliveryAttempt.notification_id, DeliveryAttempt.attempt.desc())
    )
    last: dict[str, DeliveryAttempt] = {}
    for attempt in rows:
        last.setdefault(attempt.notification_id, attempt)
    return last
