"""The events the website receives (README, "Webhooks"): their types, their payloads (versioned by
``schema_version``; fields are only added, never renamed or removed) and how each is derived from the order
events order-api sends the notifier. No personal data: no email, no customer or operator id."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from desk_contracts.events import ActionFields
from servicekit.events import read_payload
from servicekit.outbox import EventEnvelope

SCHEMA_VERSION: Literal[1] = 1

DecimalString = Annotated[Decimal, PlainSerializer(lambda d: format(d, "f"), return_type=str)]


class WebhookEventType(enum.StrEnum):
    order_created = "order.created"
    order_address_assigned = "order.address_assigned"
    order_status_changed = "order.status_changed"
    order_expired = "order.expired"
    test = "webhook.test"


SUBSCRIBABLE = tuple(t for t in WebhookEventType if t is not WebhookEventType.test)
"""What an endpoint may subscribe to; ``webhook.test`` is sent only on request, to one endpoint."""

DESCRIPTIONS = {
    WebhookEventType.order_created: "A new order was announced (with its address, its queue place, or neither yet).",
    WebhookEventType.order_address_assigned: "An order that was waiting for an address (queued or awaiting "
    "one) got its deposit address.",
    WebhookEventType.order_status_changed: "Any change of an order's status (the address assigned and the "
    "expiry included, which also send their own event).",
    WebhookEventType.order_expired: "An order expired unpaid.",
    WebhookEventType.test: "Sent by `POST /v1/admin/webhook-endpoints/{id}/test` only.",
}

STATUS_EVENTS = (
    "order.status_changed",
    "order.taken",
    "order.released",
    "order.assignment_timed_out",
    "order.assigned",
    "order.assignment_lapsed",
)
"""order-api's events that change an order's status (each change emits exactly one of them)."""
WITHOUT_ADDRESS = frozenset({"queued", "awaiting_address"})


class OrderData(BaseModel):
    """The order as it is after the change."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = Field(description="This payload's version: 1.")
    order_id: str = Field(description="The order, as order-api's `GET /v1/orders/{id}` names it.")
    status: str = Field(
        description="awaiting_address, queued, awaiting_deposit, in_progress, completed, cancelled or expired."
    )
    from_status: str | None = Field(description="The status before the change; null for `order.created`.")
    from_currency: str = Field(description="What the customer sends (BTC, ETH, USDT).")
    from_network: str = Field(description="On which network they send it.")
    to_currency: str = Field(description="What they receive.")
    to_network: str = Field(description="On which network they receive it.")
    amount: DecimalString = Field(description="What the customer sends, in `from_currency` (decimal string).")
    deposit_address: str | None = Field(description="Where the customer sends it; null until assigned.")
    queue_position: int | None = Field(description="The order's place in its currency's queue, when queued.")
    expires_at: datetime | None = Field(description="When the order expires unless it moves on.")
    version: int = Field(description="The order's version after the change: the newest version wins.")


class TestData(BaseModel):
    """``data`` of ``webhook.test``."""

    schema_version: Literal[1] = Field(description="This payload's version: 1.")
    message: str


class WebhookEvent(BaseModel):
    """The body of a delivery: ``{"type", "timestamp", "data"}`` (Standard Webhooks)."""

    type: WebhookEventType
    timestamp: datetime = Field(description="When the change happened at the desk.")
    data: OrderData | TestData


def webhook_events(envelope: EventEnvelope) -> list[WebhookEvent]:
    """The webhook events an order-api event makes (none for an event the website is not told about)."""
    if envelope.type != "order.created" and envelope.type not in STATUS_EVENTS:
        return []
    order = read_payload(ActionFields, envelope)
    from_status = order.from_status if envelope.type != "order.created" else None
    data = OrderData(
        schema_version=SCHEMA_VERSION,
        order_id=order.order_id,
        status=order.status,
        from_status=from_status,
        from_currency=order.from_currency,
        from_network=order.from_network,
        to_currency=order.to_currency,
        to_network=order.to_network,
        amount=order.amount,
        deposit_address=order.deposit_address,
        queue_position=order.queue_position,
        expires_at=order.expires_at,
        version=order.version,
    )
    if envelope.type == "order.created":
        types = [WebhookEventType.order_created]
    else:
        types = [WebhookEventType.order_status_changed]
        if order.deposit_address and from_status in WITHOUT_ADDRESS:
            types.append(WebhookEventType.order_address_assigned)
        if order.status == "expired":
            types.append(WebhookEventType.order_expired)
    return [WebhookEvent(type=t, timestamp=envelope.occurred_at, data=data) for t in types]
