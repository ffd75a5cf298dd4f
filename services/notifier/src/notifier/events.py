"""The handlers of ``POST /v1/events`` (inbox-deduplicated by servicekit): they apply ``notifier.rules`` in
the inbox's transaction, so an event's messages and alert changes are written exactly once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from notifier.alerts.conditions import AlertPolicy
from notifier.alerts.service import apply
from notifier.notifications.service import queue_notification
from notifier.rules import ALERT_RULES, RULES, alert_conditions, messages_for
from servicekit.events import EventHandler
from servicekit.outbox import EventEnvelope


def event_handlers(policy: AlertPolicy) -> dict[str, EventHandler]:
    """One handler per event type a rule reads: queue its messages, apply its alert conditions."""

    async def handle(session: AsyncSession, envelope: EventEnvelope) -> None:
        for message in messages_for(envelope, telegram=policy.telegram):
            await queue_notification(
                session=session,
                channel=message.channel,
                template=message.template,
                locale=message.locale,
                recipient=message.recipient,
                variables=message.variables,
                order_id=message.order_id,
                event_id=envelope.id,
            )
        for report in alert_conditions(envelope):
            await apply(session=session, report=report, policy=policy, event_id=envelope.id)

    types = {rule.event_type for rule in RULES} | {rule.event_type for rule in ALERT_RULES}
    return dict.fromkeys(sorted(types), handle)
