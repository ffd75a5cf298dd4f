"""Webhook endpoints (register, change, rotate the secret, delete), their delivery log, redelivery and test
events, and the queueing of the website's events. Nothing here sends: the ``webhook`` delivery worker does
(``notifier.webhooks.sender``)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.notifications.models import TELEGRAM_NO_LOCALE, Channel, Notification, NotificationStatus
from notifier.notifications.service import queue_notification, requeue
from notifier.protection import DataProtection
from notifier.settings import Settings
from notifier.webhooks import repository
from notifier.webhooks.errors import (
    WebhookDeliveryNotFoundError,
    WebhookDeliveryPendingError,
    WebhookEndpointNotFoundError,
    WebhookUrlRefusedError,
)
from notifier.webhooks.events import SCHEMA_VERSION, TestData, WebhookEvent, WebhookEventType, webhook_events
from notifier.webhooks.models import WebhookEndpoint
from notifier.webhooks.schemas import (
    WebhookDeliveryPage,
    WebhookDeliveryRead,
    WebhookEndpointCreate,
    WebhookEndpointPage,
    WebhookEndpointRead,
    WebhookEndpointUpdate,
    WebhookEndpointWithSecret,
)
from notifier.webhooks.signing import new_secret
from notifier.webhooks.targets import TargetRefused, checked_target
from servicekit.db import utcnow
from servicekit.outbox import EventEnvelope

TEST_MESSAGE = "A test event from the Exchange Desk: your endpoint receives and verifies deliveries."


async def check_url(url: str, *, settings: Settings) -> None:
    """Refuse (422 naming ``url``) a URL that may not receive webhooks (see ``notifier.webhooks.targets``)."""
    try:
        await checked_target(
            url,
            allow_http=settings.webhook_allow_http,
            allow_private=settings.webhook_allow_private_targets,
        )
    except TargetRefused as exc:
        raise WebhookUrlRefusedError.for_field("url", f"{url} {exc}", kind="refused") from exc


def to_read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=endpoint.id,
        url=endpoint.url,
        event_types=[WebhookEventType(t) for t in endpoint.event_types],
        enabled=endpoint.enabled,
        description=endpoint.description,
        previous_secret_expires_at=endpoint.previous_secret_expires_at,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> WebhookEndpointWithSecret:
    return WebhookEndpointWithSecret(**to_read(endpoint).model_dump(), secret=secret)


def signing_secrets(endpoint: WebhookEndpoint, *, protection: DataProtection, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one during the
    rotation's overlap."""
    secrets = [protection.open_webhook_secret(endpoint.secret_sealed)]
    expires_at = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_sealed is not None and expires_at is not None and now < expires_at:
        secrets.append(protection.open_webhook_secret(endpoint.previous_secret_sealed))
    return secrets


async def create_endpoint(
    *, session: AsyncSession, protection: DataProtection, settings: Settings, body: WebhookEndpointCreate
) -> WebhookEndpointWithSecret:
    """Register an endpoint; its secret is in this answer only (stored sealed)."""
    await check_url(body.url, settings=settings)
    now = utcnow()
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=str(uuid.uuid4()),
        url=body.url,
        description=body.description,
        event_types=sorted(set(body.event_types)),
        enabled=body.enabled,
        secret_sealed=protection.seal_webhook_secret(secret),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    await session.flush()
    return _with_secret(endpoint, secret)


async def endpoint_of(
    session: AsyncSession, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=for_update)
    if endpoint is None:
        raise WebhookEndpointNotFoundError(f"No webhook endpoint has the id {endpoint_id}.")
    return endpoint


async def list_endpoints(*, session: AsyncSession, cursor: str | None, limit: int) -> WebhookEndpointPage:
    rows = await repository.endpoint_page(session, cursor=cursor, limit=limit)
    page, next_cursor = repository.ENDPOINTS_NEWEST_FIRST.cut(rows, limit=limit)
    return WebhookEndpointPage(items=[to_read(e) for e in page], next_cursor=next_cursor)


async def update_endpoint(
    *, session: AsyncSession, settings: Settings, endpoint_id: str, body: WebhookEndpointUpdate
) -> WebhookEndpointRead:
    endpoint = await endpoint_of(session, endpoint_id, for_update=True)
    if body.url is not None:
        await check_url(body.url, settings=settings)
        endpoint.url = body.url
    if body.event_types is not None:
        endpoint.event_types = sorted(set(body.event_types))
    if body.enabled is not None:
        endpoint.enabled = body.enabled
    if body.description is not None:
        endpoint.description = body.description
    endpoint.updated_at = utcnow()
    await session.flush()
    return to_read(endpoint)


async def delete_endpoint(*, session: AsyncSession, endpoint_id: str) -> None:
    """Its deliveries still pending fail at their next attempt (no endpoint to send to)."""
    await session.delete(await endpoint_of(session, endpoint_id, for_update=True))
    await session.flush()


async def rotate_secret(
    *, session: AsyncSession, protection: DataProtection, settings: Settings, endpoint_id: str
) -> WebhookEndpointWithSecret:
    """A new secret (in this answer only); the current one keeps signing beside it for the overlap."""
    endpoint = await endpoint_of(session, endpoint_id, for_update=True)
    now = utcnow()
    secret = new_secret()
    endpoint.previous_secret_sealed = endpoint.secret_sealed
    endpoint.previous_secret_expires_at = now + timedelta(hours=settings.webhook_secret_overlap_hours)
    endpoint.secret_sealed = protection.seal_webhook_secret(secret)
    endpoint.updated_at = now
    await session.flush()
    return _with_secret(endpoint, secret)


async def _queue(
    session: AsyncSession,
    *,
    protection: DataProtection,
    endpoint_id: str,
    event: WebhookEvent,
    event_id: str | None,
    order_id: str | None,
) -> str:
    return await queue_notification(
        session=session,
        protection=protection,
        channel=Channel.webhook,
        template=event.type.value,
        locale=TELEGRAM_NO_LOCALE,
        recipient=endpoint_id,
        variables=event.model_dump(mode="json"),
        order_id=order_id,
        event_id=event_id,
    )


async def queue_webhooks(
    session: AsyncSession, *, protection: DataProtection, envelope: EventEnvelope
) -> None:
    """Queue the website's events ``envelope`` makes, one delivery per event type and enabled endpoint
    subscribed to it (the same event received twice queues nothing more)."""
    events = webhook_events(envelope)
    if not events:
        return
    for endpoint in await repository.enabled_endpoints(session):
        for event in events:
            if event.type.value in endpoint.event_types:
                order_id = envelope.payload.get("order_id")
                await _queue(
                    session,
                    protection=protection,
                    endpoint_id=endpoint.id,
                    event=event,
                    event_id=envelope.id,
                    order_id=str(order_id) if order_id else None,
                )


async def send_test(
    *, session: AsyncSession, protection: DataProtection, endpoint_id: str
) -> WebhookDeliveryRead:
    """Queue a ``webhook.test`` delivery to the endpoint (enabled or not: it is how one checks it first)."""
    endpoint = await endpoint_of(session, endpoint_id)
    event = WebhookEvent(
        type=WebhookEventType.test,
        timestamp=utcnow(),
        data=TestData(schema_version=SCHEMA_VERSION, message=TEST_MESSAGE),
    )
    delivery_id = await _queue(
        session, protection=protection, endpoint_id=endpoint.id, event=event, event_id=None, order_id=None
    )
    delivery = await session.get(Notification, delivery_id)
    if delivery is None:  # pragma: no cover (queued in this transaction)
        raise WebhookDeliveryNotFoundError(f"The endpoint has no delivery {delivery_id}.")
    return _delivery_read(delivery, attempt_status=None, latency_ms=None)


def _delivery_read(
    delivery: Notification, *, attempt_status: int | None, latency_ms: int | None
) -> WebhookDeliveryRead:
    pending = delivery.status == NotificationStatus.pending
    return WebhookDeliveryRead(
        id=delivery.id,
        event_type=delivery.template,
        event_id=delivery.event_id,
        order_id=delivery.order_id,
        status=NotificationStatus(delivery.status),
        attempts=delivery.attempts,
        response_status=attempt_status,
        latency_ms=latency_ms,
        error=delivery.last_error,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        created_at=delivery.created_at,
        sent_at=delivery.sent_at,
    )


async def list_deliveries(
    *, session: AsyncSession, protection: DataProtection, endpoint_id: str, cursor: str | None, limit: int
) -> WebhookDeliveryPage:
    """The endpoint's delivery log, newest first, each with its last attempt's answer and latency."""
    endpoint = await endpoint_of(session, endpoint_id)
    index = protection.recipient_index(Channel.webhook.value, endpoint.id)
    rows = await repository.delivery_page(session, recipient_index=index, cursor=cursor, limit=limit)
    page, next_cursor = repository.DELIVERIES_NEWEST_FIRST.cut(rows, limit=limit)
    last = await repository.last_attempts(session, delivery_ids=[d.id for d in page])
    items = []
    for delivery in page:
        attempt = last.get(delivery.id)
        items.append(
            _delivery_read(
                delivery,
                attempt_status=attempt.response_status if attempt else None,
                latency_ms=attempt.duration_ms if attempt else None,
            )
        )
    return WebhookDeliveryPage(items=items, next_cursor=next_cursor)


async def redeliver(
    *, session: AsyncSession, protection: DataProtection, endpoint_id: str, delivery_id: str
) -> WebhookDeliveryRead:
    """Send a delivery again (sent, failed or dead), with the same ``webhook-id`` and a fresh attempt budget."""
    endpoint = await endpoint_of(session, endpoint_id)
    index = protection.recipient_index(Channel.webhook.value, endpoint.id)
    delivery = await repository.delivery(session, recipient_index=index, delivery_id=delivery_id)
    if delivery is None:
        raise WebhookDeliveryNotFoundError(f"The endpoint has no delivery {delivery_id}.")
    if delivery.status == NotificationStatus.pending:
        raise WebhookDeliveryPendingError(
            "The delivery is pending: it is tried again on its own.", extra={"status": delivery.status}
        )
    await requeue(session, delivery)
    return _delivery_read(delivery, attempt_status=None, latency_ms=None)
