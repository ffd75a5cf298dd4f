"""Assignment timeout (seed 13.4): an order taken and left untouched — no step of its story (``order_event``)
for ``assignment_timeout_minutes``, or the override for its currency — goes back to the takeable pool, and
``order.assignment_timed_out`` tells the operators. Orders waiting on an open escalation are left alone:
support holds them up, not the operator. The assignment-timeout worker (``order_api.workers.sweeper``) runs
it in every replica; rows are claimed with ``SKIP LOCKED``."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators import repository
from order_api.operators.workload import deposit_deadline
from order_api.orders.lifecycle import ORDER_ASSIGNMENT_TIMED_OUT, SYSTEM_ASSIGNMENT_TIMEOUT, give_back
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import utcnow
from servicekit.plurals import english

log = logging.getLogger("order_api.operators.timeouts")
BATCH = 100


def timeout_minutes(settings: Settings, currency: str) -> int:
    return settings.assignment_timeout_by_currency.get(currency, settings.assignment_timeout_minutes)


async def return_idle_assignments(
    session: AsyncSession, *, settings: Settings, protection: DataProtection
) -> int:
    """Give back every idle in-progress order, in the caller's transaction; returns how many."""
    orders = await repository.claim_idle_assignments(
        session,
        now=utcnow(),
        timeout_minutes=settings.assignment_timeout_minutes,
        timeout_by_currency=settings.assignment_timeout_by_currency,
        limit=BATCH,
    )
    for order in orders:
        await give_back(
            session,
            protection=protection,
            order=order,
            actor=SYSTEM_ASSIGNMENT_TIMEOUT,
            expires_at=deposit_deadline(settings, order),
            event_type=ORDER_ASSIGNMENT_TIMED_OUT,
            comment=f"Untouched for {english(timeout_minutes(settings, order.from_currency), 'minute')}.",
        )
    if orders:
        log.info("idle assignments returned to the pool", extra={"count": len(orders)})
    return len(orders)
