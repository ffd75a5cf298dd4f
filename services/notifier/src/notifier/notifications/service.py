"""Queueing, listing and redelivering notifications. Nothing here sends: the delivery worker does."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.messages import TEMPLATES
from notifier.messages.render import resolve_locale
from notifier.notifications import repository
from notifier.notifications.errors import NotificationNotFoundError, NotificationNotRedeliverableError
from notifier.notifications.models import (
    TELEGRAM_KINDS,
    Channel,
    Notification,
    NotificationStatus,
)
from notifier.notifications.schemas import NotificationPageRead, NotificationRead
from notifier.protection import DataProtection
from notifier.webhooks.events import WebhookEventType
from servicekit.db import lock_until_commit, utcnow
from servicekit.telemetry import current_traceparent, mask_secrets
from servicekit.workers import wake_after_commit

log = logging.getLogger("notifier.notifications")

ERASED = "erased"
WEBHOOK_TYPES = frozenset(WebhookEventType)


def _jsonable(value: Any) -> Any:
    """Template variables as JSON: Decimals as exact strings, datetimes as ISO 8601."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def request_delivery(session: AsyncSession) -> None:
    """Wake the delivery worker after this session commits."""
    wake_after_commit(session)


class MessageSubject(TypedDict, total=False):
    """What a queued message is about (see :func:`queue_notification`)."""

    order_id: str | None
    event_id: str | None
    customer_id: str | None


async def queue_email(
    *,
    session: AsyncSession,
    protection: DataProtection,
    template: str,
    locale: str | None,
    recipient: str,
    variables: Mapping[str, Any],
    **about: Unpack[MessageSubject],
) -> str:
    """Record an email to send, in the caller's transaction; returns its id (see :func:`queue_notification`)."""
    return await queue_notification(
        session=session,
        protection=protection,
        channel=Channel.email,
        template=template,
        locale=resolve_locale(locale),
        recipient=recipient,
        variables=variables,
        **about,
    )


async def queue_notification(
    *,
    session: AsyncSession,
    protection: DataProtection,
    channel: Channel,
    template: str,
    locale: str,
    recipient: str,
    variables: Mapping[str, Any],
    order_id: str | None = None,
    event_id: str | None = None,
    customer_id: str | None = None,
) -> str:
    """Record a message to send, in the caller's transaction; returns its id. The same ``event_id``,
    ``template`` and ``recipient`` queued twice make one notification (the first one's id is returned).

    ``template`` is an email template for email, the message kind (``order_card``, ``alert``) for
    Telegram, whose ``variables`` are the telegram-gateway request without its ``message_id``, and the event
    type for a webhook, whose recipient is the endpoint's id and ``variables`` the body. The recipient
    and the variables are stored sealed with ``protection``, the recipient found by its blind index;
    ``customer_id`` names the customer they are about, so that an erasure finds them."""
    known = {Channel.email: TEMPLATES, Channel.telegram: TELEGRAM_KINDS, Channel.webhook: WEBHOOK_TYPES}
    if template not in known[channel]:
        raise ValueError(f"unknown {channel} template {template!r}")
    now = utcnow()
    notification_id = str(uuid.uuid4())
    address = recipient.strip()
    index = protection.recipient_index(channel.value, address)
    values = {
        "id": notification_id,
        "channel": channel.value,
        "template": template,
        "locale": locale,
        "recipient_sealed": protection.seal_recipient(address),
        "recipient_index": index,
        "variables_sealed": protection.seal_variables(_jsonable(dict(variables))),
        "customer_id": customer_id,
        "order_id": order_id,
        "event_id": event_id,
        "status": NotificationStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "traceparent": current_traceparent(),
        "created_at": now,
    }
    if not await repository.insert_notification(session, values=values):
        existing = await repository.notification_of_event(
            session, event_id=event_id, template=template, recipient_index=index
        )
        if existing is None:  # pragma: no cover (the conflicting row was deleted meanwhile)
            raise RuntimeError("notification conflict without a row")
        return existing
    request_delivery(session)
    return notification_id


async def earlier_emails_of_order(
    session: AsyncSession, *, protection: DataProtection, order_id: str
) -> list[tuple[str, dict[str, Any] | None]]:
    """The order's emails queued so far (template, variables; ``None`` once erased), oldest first. On
    PostgreSQL the order is locked for the rest of the transaction first, so two events about it deciding
    at once see each other's emails."""
    await lock_until_commit(session, f"notifier.order:{order_id}")
    rows = await repository.emails_of_order(session, order_id=order_id)
    return [
        (template, protection.open_variables(sealed) if sealed is not None else None)
        for template, sealed in rows
    ]


def shown_recipient(protection: DataProtection, notification: Notification) -> str:
    """The recipient as the API shows it: masked (``a***@example.com``), ``erased`` once erased."""
    if notification.recipient_sealed is None:
        return ERASED
    return mask_secrets(protection.open_recipient(notification.recipient_sealed))


def to_read(notification: Notification, *, protection: DataProtection) -> NotificationRead:
    pending = notification.status == NotificationStatus.pending
    return NotificationRead(
        id=notification.id,
        channel=Channel(notification.channel),
        template=notification.template,
        locale=notification.locale,
        recipient=shown_recipient(protection, notification),
        subject=notification.subject,
        order_id=notification.order_id,
        event_id=notification.event_id,
        status=NotificationStatus(notification.status),
        attempts=notification.attempts,
        next_attempt_at=notification.next_attempt_at if pending else None,
        last_error=mask_secrets(notification.last_error) if notification.last_error else None,
        created_at=notification.created_at,
        sent_at=notification.sent_at,
    )


async def list_notifications(
    *,
    session: AsyncSession,
    protection: DataProtection,
    order_id: str | None,
    channel: Channel | None,
    status: NotificationStatus | None,
    cursor: str | None,
    limit: int,
) -> NotificationPageRead:
    """Newest first, keyset-paginated by (created_at, id)."""
    rows = await repository.notification_page(
        session, order_id=order_id, channel=channel, status=status, cursor=cursor, limit=limit
    )
    page, next_cursor = repository.NEWEST_FIRST.cut(rows, limit=limit)
    return NotificationPageRead(
        items=[to_read(n, protection=protection) for n in page], next_cursor=next_cursor
    )


async def redeliver(
    *, session: AsyncSession, protection: DataProtection, notification_id: str
) -> NotificationRead:
    """Put a failed or dead notification back in the queue, due now, with a fresh attempt budget."""
    notification = await session.get(Notification, notification_id, with_for_update=True)
    if notification is None:
        raise NotificationNotFoundError(f"No notification has the id {notification_id}.")
    if notification.recipient_sealed is None or notification.variables_sealed is None:
        raise NotificationNotRedeliverableError(
            "The notification's recipient was erased; it cannot be sent again.",
            extra={"status": notification.status},
        )
    if notification.status not in (NotificationStatus.failed, NotificationStatus.dead):
        raise NotificationNotRedeliverableError(
            f"The notification is {notification.status}; only failed or dead ones can be redelivered.",
            extra={"status": notification.status},
        )
    await requeue(session, notification)
    return to_read(notification, protection=protection)


async def requeue(session: AsyncSession, notification: Notification) -> None:
    """Put ``notification`` back in the queue, due now, with a fresh attempt budget (its attempts stay)."""
    notification.status = NotificationStatus.pending.value
    notification.attempts = 0
    notification.next_attempt_at = utcnow()
    await session.flush()
    request_delivery(session)


async def erase_customer(*, session: AsyncSession, customer_id: str) -> int:
    """Anonymise every notification about ``customer_id``, irreversibly: the sealed recipient, its blind
    index and the sealed variables are dropped, error texts too (a provider's may quote the address); one
    still pending is failed, never sent. What stays (template, order id, status, times, attempts) names no
    one. Returns how many notifications were anonymised; erasing twice changes nothing more."""
    count = await repository.anonymise_customer(session, customer_id=customer_id)
    log.info("customer erased", extra={"customer_id": customer_id, "notifications": count})
    return count
