"""Who is told what (README, "Events"): the one place that decides it.

- ``RULES``: which event sends which message to whom. Customers get emails (template, recipient from the
  payload, variables picked from it); operators get Telegram order cards through telegram-gateway, whose
  ``event`` and order snapshot tell the gateway whether to post a new card (a new order, an order back in
  the pool), edit the cards it posted, or post to the support chat (an escalation).
- ``ALERT_RULES``: which event raises or resolves which alert (wallet-pool's pool levels and address queues,
  order-api's orders nobody took, dead-lettered events in a service's outbox). The delivery
  failure-rate alert is raised by the alert worker from delivery figures, not by an event.
- ``alert_messages``: who hears about an alert's changes: the operators' Telegram chat and the admins'
  emails.

An event no rule applies to sends nothing; the inbox makes a redelivered event send nothing again, and a fact
told once per order (``order_created``, ``address_ready``) is not told again by another event saying it.
``notifier.events`` applies these tables to ``POST /v1/events``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from desk_contracts.events import (
    ActionFields,
    CustomerEmailCodeRequested,
    OrderAssigned,
    OrderAssignmentLapsed,
    OrderCreated,
    OrderFields,
    OrderReassigned,
    OrderStatusChanged,
)
from notifier.alerts.conditions import (
    AlertCondition,
    AlertNotice,
    AlertPolicy,
    Recovery,
    api_degraded,
    api_recovered,
    orders_untouched,
    orders_untouched_cleared,
    outbox_dead,
    outbox_dead_cleared,
    pool_low,
    pool_recovered,
    queue_backlogged,
    queue_cleared,
)
from notifier.messages.render import resolve_locale
from notifier.notifications.models import TELEGRAM_NO_LOCALE, Channel
from servicekit.events import read_payload
from servicekit.outbox import OUTBOX_DEAD_CLEARED, OUTBOX_DEAD_LETTERED, EventEnvelope

Payload = Mapping[str, Any]

OPERATORS_CHAT = "operators"
SUPPORT_CHAT = "support"
NOTE_MAX = 1000
ALERT_TITLE_MAX = 200
ALERT_TEXT_MAX = 3000


@dataclass(frozen=True, slots=True)
class Message:
    """One message an event (or an alert change) asks for."""

    channel: Channel
    template: str
    recipient: str
    locale: str
    variables: dict[str, Any]
    order_id: str | None
    customer_id: str | None = None
    """The customer an email is about (from the event's ``customer_id``), so that an erasure finds it."""
    once_per_order: bool = False
    """A fact told once per order, whichever event tells it (see :func:`already_told`)."""


@dataclass(frozen=True, slots=True)
class Rule:
    """``event_type`` (when ``applies`` to its payload) sends ``template`` on ``channel`` to ``recipient``
    (``None``: nobody to tell), with ``variables`` picked from the event."""

    event_type: str
    channel: Channel
    template: str
    variables: Callable[[EventEnvelope], dict[str, Any]]
    recipient: Callable[[Payload], str | None]
    applies: Callable[[Payload], bool] = lambda _payload: True
    once_per_order: bool = False


# --- customers: email ------------------------------------------------------------------------------------


def _field(name: str) -> Callable[[Payload], str | None]:
    def recipient(payload: Payload) -> str | None:
        value = payload.get(name)
        return str(value) if value else None

    return recipient


def _iso(value: datetime | None) -> str | None:
    """A time as the event wrote it."""
    return value.isoformat() if value is not None else None


def _order_created(envelope: EventEnvelope) -> dict[str, Any]:
    p = read_payload(OrderCreated, envelope)
    return {
        "order_id": p.order_id,
        "amount": str(p.amount),
        "currency_from": p.from_currency,
        "currency_to": p.to_currency,
        "status": p.status,
        "address": p.deposit_address,
        "queue_position": p.queue_position,
        "expires_at": _iso(p.expires_at),
    }


def _address_ready(envelope: EventEnvelope) -> dict[str, Any]:
    p = read_payload(OrderStatusChanged, envelope)
    return {
        "order_id": p.order_id,
        "amount": str(p.amount),
        "currency_from": p.from_currency,
        "address": p.deposit_address,
        "expires_at": _iso(p.expires_at),
    }


def _status_changed(envelope: EventEnvelope) -> dict[str, Any]:
    p = read_payload(OrderStatusChanged, envelope)
    variables = {
        "order_id": p.order_id,
        "status": p.status,
        "amount": str(p.amount),
        "currency_from": p.from_currency,
        "currency_to": p.to_currency,
    }
    record = p.transaction if p.status == "completed" else None
    if record is not None:  # what actually moved (the payout address is not told)
        told = {
            "received": record.deposit_amount,
            "sent": record.payout_amount,
            "payout_tx_hash": record.payout_tx_hash,
        }
        variables.update(
            {
                name: format(value, "f") if isinstance(value, Decimal) else str(value)  # 0.0000004, not 4E-7
                for name, value in told.items()
                if value is not None
            }
        )
    return variables


def _email_code(envelope: EventEnvelope) -> dict[str, Any]:
    p = read_payload(CustomerEmailCodeRequested, envelope)
    expires_at = p.expires_at if p.expires_at.tzinfo else p.expires_at.replace(tzinfo=UTC)
    seconds = (expires_at - envelope.occurred_at).total_seconds()
    return {"code": p.code, "minutes": max(1, math.ceil(seconds / 60))}


CLOSED = frozenset({"completed", "cancelled", "expired"})
WITHOUT_ADDRESS = frozenset({"queued", "awaiting_address"})
"""An order in these states has no deposit address yet; its customer hears of it in ``address_ready``."""
customer_email = _field("customer_email")


def _address_arrived(payload: Payload) -> bool:
    return payload.get("status") == "awaiting_deposit" and payload.get("from_status") in WITHOUT_ADDRESS


def already_told(template: str, earlier: Iterable[tuple[str, Mapping[str, Any] | None]]) -> bool:
    """Whether a once-per-order email ``template`` would repeat what the order's ``earlier`` emails
    (template, variables; ``None`` once erased) told: ``order_created`` is sent once per order, whatever its
    status when announced, and not after ``address_ready`` (an announcement arriving late would say the
    address is still on its way); ``address_ready`` once, and never after an ``order_created`` that carried
    the address."""
    for told, variables in earlier:
        if told == template or (template, told) == ("order_created", "address_ready"):
            return True
        address_told = variables is None or variables.get("address") is not None
        if template == "address_ready" and told == "order_created" and address_told:
            return True
    return False


# --- operators: Telegram order cards (telegram-gateway POST /v1/messages) ---------------------------------


CARD_FIELDS = (frozenset(OrderFields.model_fields) - {"customer_id", "locale"}) | {"operator_name"}
"""What telegram-gateway's card shows of an order (``order`` of its ``POST /v1/messages``): the order's
fields but whom to email and in which language, and who holds it."""


def _order_snapshot(envelope: EventEnvelope) -> dict[str, Any]:
    """The card's ``order``, read with the fields every order event carries (a payload missing one is
    refused, never a half-filled card)."""
    return read_payload(ActionFields, envelope).model_dump(mode="json", include=set(CARD_FIELDS))


def _order_card(chat: str) -> Callable[[EventEnvelope], dict[str, Any]]:
    """The gateway request for an order card (without ``message_id``, the notification's id): the event
    decides post / edit / support, the snapshot's ``status`` decides the card (a Take button for an order
    awaiting deposit, a queue place for a queued one), ``note`` carries the comment or escalation reason."""

    def variables(envelope: EventEnvelope) -> dict[str, Any]:
        comment = envelope.payload.get("comment")
        return {
            "kind": "order_card",
            "chat": chat,
            "event": envelope.type,
            "order": _order_snapshot(envelope),
            "note": str(comment)[:NOTE_MAX] if comment else None,
        }

    return variables


def _reassignment_card(envelope: EventEnvelope) -> dict[str, Any]:
    """The cards edited to the new holder, and both operators told privately (``reassignment``)."""
    p = read_payload(OrderReassigned, envelope)
    return {
        **_order_card(OPERATORS_CHAT)(envelope),
        "reassignment": {
            "previous_operator_name": p.previous_operator_name,
            "previous_telegram_user_id": p.previous_operator_telegram_user_id,
            "telegram_user_id": p.operator_telegram_user_id,
            "actor_role": p.actor_role,
        },
    }


def _assignment_card(envelope: EventEnvelope) -> dict[str, Any]:
    """Auto-assignment: the cards edited to the operator it went to, who is told privately, with a button to
    accept it before ``lapses_at`` (``assignment``)."""
    p = read_payload(OrderAssigned, envelope)
    return {
        **_order_card(OPERATORS_CHAT)(envelope),
        "assignment": {"telegram_user_id": p.operator_telegram_user_id, "lapses_at": _iso(p.lapses_at)},
    }


def _lapse_card(envelope: EventEnvelope) -> dict[str, Any]:
    """An auto-assignment lapsed: the card posted again (back in the pool), its operator told privately."""
    p = read_payload(OrderAssignmentLapsed, envelope)
    return {
        **_order_card(OPERATORS_CHAT)(envelope),
        "assignment": {"telegram_user_id": p.previous_operator_telegram_user_id, "lapses_at": None},
    }


def _chat(name: str) -> Callable[[Payload], str | None]:
    return lambda _payload: name


def _card(event_type: str, chat: str = OPERATORS_CHAT) -> Rule:
    return Rule(event_type, Channel.telegram, "order_card", _order_card(chat), recipient=_chat(chat))


RULES: tuple[Rule, ...] = (
    # customers
    # order_created: whatever the order's status when announced (an address, a queue place, or an address
    # still being prepared); address_ready: when an order without an address gets one
    Rule(
        "order.created",
        Channel.email,
        "order_created",
        _order_created,
        recipient=customer_email,
        once_per_order=True,
    ),
    Rule(
        "order.status_changed",
        Channel.email,
        "address_ready",
        _address_ready,
        recipient=customer_email,
        applies=_address_arrived,
        once_per_order=True,
    ),
    Rule(
        "order.status_changed",
        Channel.email,
        "order_status_changed",
        _status_changed,
        recipient=customer_email,
        applies=lambda p: p.get("status") in CLOSED,
    ),
    Rule(
        "customer.email_code_requested",
        Channel.email,
        "email_code",
        _email_code,
        recipient=_field("email"),
    ),
    # operators: a new card (new order: takeable or queued, by its status)
    _card("order.created"),
    # operators: the card posted again, takeable ("back in the pool")
    _card("order.released"),
    _card("order.assignment_timed_out"),
    # operators: the order's cards edited to its new state
    _card("order.taken"),
    _card("order.status_changed"),
    _card("order.escalation_resolved"),
    # operators: the cards edited to the new holder; both operators told privately
    Rule(
        "order.reassigned",
        Channel.telegram,
        "order_card",
        _reassignment_card,
        recipient=_chat(OPERATORS_CHAT),
    ),
    # operators: auto-assignment; the cards edited to the operator it went to (or posted again when it
    # lapsed), who is told privately
    Rule(
        "order.assigned",
        Channel.telegram,
        "order_card",
        _assignment_card,
        recipient=_chat(OPERATORS_CHAT),
    ),
    Rule(
        "order.assignment_lapsed",
        Channel.telegram,
        "order_card",
        _lapse_card,
        recipient=_chat(OPERATORS_CHAT),
    ),
    # support: a card in the support chat (the gateway also edits the operators' cards)
    _card("order.escalated", SUPPORT_CHAT),
)


def _customer_id(payload: Payload) -> str | None:
    value = payload.get("customer_id")
    return str(value) if value else None


def messages_for(envelope: EventEnvelope, *, telegram: bool = True) -> list[Message]:
    """The messages ``envelope`` asks for under ``RULES`` (none when no rule applies or nobody is known to
    tell); no Telegram messages when ``telegram`` is off."""
    messages: list[Message] = []
    for rule in RULES:
        if rule.event_type != envelope.type or not rule.applies(envelope.payload):
            continue
        if rule.channel is Channel.telegram and not telegram:
            continue
        recipient = rule.recipient(envelope.payload)
        if not recipient:
            continue
        email = rule.channel is Channel.email
        messages.append(
            Message(
                channel=rule.channel,
                template=rule.template,
                recipient=recipient,
                locale=resolve_locale(envelope.payload.get("locale")) if email else TELEGRAM_NO_LOCALE,
                variables=rule.variables(envelope),
                order_id=envelope.payload.get("order_id"),
                customer_id=_customer_id(envelope.payload) if email else None,
                once_per_order=rule.once_per_order,
            )
        )
    return messages


# --- alerts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRule:
    """``event_type`` reports a condition (``condition`` returns an :class:`AlertCondition` to raise or keep
    its alert, or a :class:`Recovery` to resolve it)."""

    event_type: str
    condition: Callable[[EventEnvelope], AlertCondition | Recovery]


ALERT_RULES: tuple[AlertRule, ...] = (
    AlertRule("pool.low", pool_low),  # key pool.low:{currency}:{network}; level empty is at least critical
    AlertRule("pool.recovered", pool_recovered),
    # key outbox.dead:{service}: the sender's outbox holds dead-lettered events (servicekit reports the count)
    AlertRule(OUTBOX_DEAD_LETTERED, outbox_dead),
    AlertRule(OUTBOX_DEAD_CLEARED, outbox_dead_cleared),
    AlertRule("queue.backlogged", queue_backlogged),  # key queue.backlog:{currency}:{network}
    AlertRule("queue.cleared", queue_cleared),
    AlertRule("orders.untouched", orders_untouched),  # key orders.untouched: one for the whole desk
    AlertRule("orders.untouched_cleared", orders_untouched_cleared),
    AlertRule(
        "api.degraded", api_degraded
    ),  # key api.health:{service}:{replica}: each replica judges its own
    AlertRule("api.recovered", api_recovered),
)


def alert_conditions(envelope: EventEnvelope) -> list[AlertCondition | Recovery]:
    return [rule.condition(envelope) for rule in ALERT_RULES if rule.event_type == envelope.type]


def alert_messages(notice: AlertNotice, policy: AlertPolicy) -> list[Message]:
    """Every raise, escalation, reopening and resolution goes to the operators' Telegram chat and to each
    admin's email."""
    messages: list[Message] = []
    if policy.telegram:
        text = f"{notice.reason}\n\n{notice.text}" if notice.reason else notice.text
        messages.append(
            Message(
                channel=Channel.telegram,
                template="alert",
                recipient=OPERATORS_CHAT,
                locale=TELEGRAM_NO_LOCALE,
                variables={
                    "kind": "alert",
                    "chat": OPERATORS_CHAT,
                    "alert": {
                        "alert_id": notice.alert_id,
                        "key": notice.key,
                        "severity": notice.shown_severity,
                        "title": notice.title[:ALERT_TITLE_MAX],
                        "text": text[:ALERT_TEXT_MAX],
                    },
                },
                order_id=None,
            )
        )
    variables = {
        "alert_id": notice.alert_id,
        "key": notice.key,
        "change": notice.change.value,
        "severity": notice.severity.value,
        "title": notice.title,
        "text": notice.text,
        "reason": notice.reason,
        "raised_at": notice.raised_at,
        "occurrences": notice.occurrences,
    }
    messages.extend(
        Message(
            channel=Channel.email,
            template="alert",
            recipient=address,
            locale=policy.admin_locale,
            variables=variables,
            order_id=None,
        )
        for address in policy.admin_emails
    )
    return messages
