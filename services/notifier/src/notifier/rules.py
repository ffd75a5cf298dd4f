"""Which event sends which email (README, "Events"): the one table of rules, and the thin handlers of
``POST /v1/events`` that apply it.

Each rule names the event type, when it applies (a predicate on the payload), the template, the payload
field holding the recipient and how the template's variables are picked. An event no rule applies to sends
nothing; the inbox makes a redelivered event send nothing again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.notifications.service import queue_email
from servicekit.events import EventHandler
from servicekit.outbox import EventEnvelope

Payload = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rule:
    event_type: str
    template: str
    variables: Callable[[EventEnvelope], dict[str, Any]]
    applies: Callable[[Payload], bool] = lambda _payload: True
    recipient_field: str = "customer_email"


@dataclass(frozen=True, slots=True)
class Email:
    """One email an event asks for."""

    template: str
    recipient: str
    locale: str | None
    variables: dict[str, Any]
    order_id: str | None


def _order_created(envelope: EventEnvelope) -> dict[str, Any]:
    p = envelope.payload
    return {
        "order_id": p["order_id"],
        "amount": p["amount"],
        "currency_from": p["from_currency"],
        "currency_to": p["to_currency"],
        "address": p.get("deposit_address"),
        "queue_position": p.get("queue_position"),
        "expires_at": p.get("expires_at"),
    }


def _address_ready(envelope: EventEnvelope) -> dict[str, Any]:
    p = envelope.payload
    return {
        "order_id": p["order_id"],
        "amount": p["amount"],
        "currency_from": p["from_currency"],
        "address": p["deposit_address"],
        "expires_at": p.get("expires_at"),
    }


def _status_changed(envelope: EventEnvelope) -> dict[str, Any]:
    p = envelope.payload
    return {
        "order_id": p["order_id"],
        "status": p["status"],
        "amount": p["amount"],
        "currency_from": p["from_currency"],
        "currency_to": p["to_currency"],
    }


def _email_code(envelope: EventEnvelope) -> dict[str, Any]:
    p = envelope.payload
    expires_at = datetime.fromisoformat(str(p["expires_at"]))
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    seconds = (expires_at - envelope.occurred_at).total_seconds()
    return {"code": p["code"], "minutes": max(1, math.ceil(seconds / 60))}


CLOSED = frozenset({"completed", "cancelled", "expired"})

RULES: tuple[Rule, ...] = (
    Rule("order.created", "order_created", _order_created),
    Rule(
        "order.status_changed",
        "address_ready",
        _address_ready,
        applies=lambda p: p.get("status") == "awaiting_deposit" and p.get("from_status") == "queued",
    ),
    Rule(
        "order.status_changed",
        "order_status_changed",
        _status_changed,
        applies=lambda p: p.get("status") in CLOSED,
    ),
    Rule("customer.email_code_requested", "email_code", _email_code, recipient_field="email"),
)


def emails_for(envelope: EventEnvelope) -> list[Email]:
    """The emails ``envelope`` asks for under ``RULES`` (none when no rule applies or no recipient is known)."""
    emails: list[Email] = []
    for rule in RULES:
        if rule.event_type != envelope.type or not rule.applies(envelope.payload):
            continue
        recipient = envelope.payload.get(rule.recipient_field)
        if not recipient:
            continue
        emails.append(
            Email(
                template=rule.template,
                recipient=str(recipient),
                locale=envelope.payload.get("locale"),
                variables=rule.variables(envelope),
                order_id=envelope.payload.get("order_id"),
            )
        )
    return emails


async def handle_event(session: AsyncSession, envelope: EventEnvelope) -> None:
    """Queue the emails ``envelope`` asks for, in the inbox's transaction."""
    for email in emails_for(envelope):
        await queue_email(
            session=session,
            template=email.template,
            locale=email.locale,
            recipient=email.recipient,
            variables=email.variables,
            order_id=email.order_id,
            event_id=envelope.id,
        )


def event_handlers() -> dict[str, EventHandler]:
    """The handlers of ``POST /v1/events``: one per event type some rule reads."""
    return {rule.event_type: handle_event for rule in RULES}
