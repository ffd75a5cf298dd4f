"""Orders nobody took: waiting for their deposit held by no operator (or auto-assigned and not accepted yet,
``orders.repository.nobody_on_it``), longer than ``untouched_order_alert_minutes`` since they got their
address. The sweeper reports the state to the notifier
through the outbox, once per crossing: ``orders.untouched`` when the first such order appears,
``orders.untouched_cleared`` when none is left (taken, cancelled, expired). The last report is read back from
the outbox (``servicekit.outbox.last_report``), so replicas report a crossing once and a lost report is
made again by the next sweep."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import Event, OrdersUntouched, OrdersUntouchedCleared
from order_api.db import outbox
from order_api.orders.models import Order
from order_api.orders.repository import nobody_on_it
from order_api.settings import Settings
from servicekit.db import utcnow
from servicekit.outbox import last_report, publish

REPORT_AGGREGATE = "orders.untouched"
NOTIFIER = "notifier"


async def report_untouched_orders(session: AsyncSession, *, settings: Settings) -> str | None:
    """Compare the untouched orders with the last report and report a crossing (in the caller's
    transaction). Returns the event type written, if any."""
    minutes = settings.untouched_order_alert_minutes
    if minutes <= 0:
        return None
    now = utcnow()
    last = await last_report(session, table=outbox, destination=NOTIFIER, aggregate_id=REPORT_AGGREGATE)
    raised = last is not None and last.event_type == OrdersUntouched.event_type
    untouched = (nobody_on_it(), Order.address_assigned_at <= now - timedelta(minutes=minutes))
    oldest = (
        await session.execute(
            select(Order.id, Order.address_assigned_at)
            .where(*untouched)
            .order_by(Order.address_assigned_at)
            .limit(1)
        )
    ).first()
    report: Event
    if oldest is not None and oldest.address_assigned_at is not None and not raised:
        count = int(await session.scalar(select(func.count()).where(*untouched)) or 0)
        report = OrdersUntouched(
            count=max(count, 1),
            oldest_order_id=oldest.id,
            oldest_address_assigned_at=oldest.address_assigned_at,
            threshold_minutes=minutes,
            observed_at=now,
        )
    elif oldest is None and raised:
        report = OrdersUntouchedCleared(observed_at=now)
    else:
        return None
    await publish(session, outbox, destination=NOTIFIER, event=report, aggregate_id=REPORT_AGGREGATE)
    return report.event_type
