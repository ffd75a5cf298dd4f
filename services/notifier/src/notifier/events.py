"""The handlers of ``POST /v1/events`` (inbox-deduplicated by servicekit): they apply ``notifier.rules`` in
the inbox's transaction, so an event's messages and alert changes are written exactly once.

Personal data in an event (the address to write to, a one-time code) arrives sealed with the event keys and
is opened here, in memory only; the notifications store it sealed with the notifier's own data keys.
Order events are also the website's webhooks (``notifier.webhooks``), queued in the same transaction.
``customer.erased`` (order-api, after an admin erased a customer) anonymises everything held about them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import CustomerErased
from notifier.alerts.service import Alerting, apply
from notifier.notifications.errors import EventSealedFieldsUnreadableError
from notifier.notifications.service import earlier_emails_of_order, erase_customer, queue_notification
from notifier.protection import DataProtection
from notifier.rules import ALERT_RULES, RULES, alert_conditions, already_told, messages_for
from notifier.webhooks.service import queue_webhooks
from servicekit.events import EventHandler, read_payload
from servicekit.outbox import EventEnvelope
from servicekit.sealing import SealedDataError

CUSTOMER_ERASED = CustomerErased.event_type


def opened(protection: DataProtection, envelope: EventEnvelope) -> EventEnvelope:
    """``envelope`` with its sealed personal data opened (in memory only)."""
    try:
        return protection.open_sealed_event(envelope)
    except SealedDataError as exc:
        raise EventSealedFieldsUnreadableError(
            f"{envelope.type} {envelope.id}: {exc}", extra={"event_id": envelope.id}
        ) from exc


def event_handlers(alerting: Alerting) -> dict[str, EventHandler]:
    """One handler per event type a rule reads: queue its messages (sealed with ``alerting.protection``),
    apply its alert conditions; and the erasure of a customer."""
    protection = alerting.protection

    async def handle(session: AsyncSession, envelope: EventEnvelope) -> None:
        envelope = opened(protection, envelope)
        for message in messages_for(envelope, telegram=alerting.policy.telegram):
            if message.once_per_order and message.order_id:
                earlier = await earlier_emails_of_order(
                    session, protection=protection, order_id=message.order_id
                )
                if already_told(message.template, earlier):
                    continue
            await queue_notification(
                session=session,
                protection=protection,
                channel=message.channel,
                template=message.template,
                locale=message.locale,
                recipient=message.recipient,
                variables=message.variables,
                order_id=message.order_id,
                event_id=envelope.id,
                customer_id=message.customer_id,
            )
        await queue_webhooks(session, protection=protection, envelope=envelope)
        for report in alert_conditions(envelope):
            await apply(session=session, report=report, alerting=alerting, event_id=envelope.id)

    async def customer_erased(session: AsyncSession, envelope: EventEnvelope) -> None:
        erased = read_payload(CustomerErased, envelope)
        await erase_customer(session=session, customer_id=erased.customer_id)

    types = {rule.event_type for rule in RULES} | {rule.event_type for rule in ALERT_RULES}
    return {**dict.fromkeys(sorted(types), handle), CUSTOMER_ERASED: customer_erased}
