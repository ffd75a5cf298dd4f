"""The order sweeps, run every ``sweep_seconds`` in every replica (rows are claimed with ``SKIP LOCKED``).

- Expiry: open orders not yet taken (``awaiting_address``, ``queued``, ``awaiting_deposit``) past
  ``expires_at`` become ``expired``, which releases their address (a finite pool must not be held by
  abandoned orders).
- Reconciliation: orders accepted while wallet-pool was unreachable, silent or gave no usable answer
  (``awaiting_address``, allocation ``pending``) get its answer as soon as it gives one: an address
  (``awaiting_deposit``) or a place in its queue (``queued``).
- Announcement: an order whose intake died between writing it and announcing it (a crash, a kill) is
  announced as it is now, once its request can no longer be running.
- Assignment timeout: a taken order left untouched goes back to the pool (``operators.timeouts``).
- Auto-assignment (``ORDER_API_AUTO_ASSIGN``): takeable orders go to an available operator, and those left
  untouched past ``ORDER_API_AUTO_ASSIGN_TIMEOUT_SECONDS`` come back to the pool (``operators.assignment``);
  switched off, it assigns nothing, and what it assigned before still lapses.
- Untouched orders: orders no operator took within ``untouched_order_alert_minutes`` of getting their address
  are reported to the notifier's alerts, once per crossing (``orders.untouched``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from order_api.clients.wallet_pool import WalletPoolClient
from order_api.context import OrderApiContext
from order_api.operators import assignment
from order_api.operators.timeouts import return_idle_assignments
from order_api.orders.intake import intake_abandoned_before
from order_api.orders.intake_persistence import announce_order, apply_allocation, log_unusable_answer
from order_api.orders.lifecycle import SYSTEM_EXPIRY, change_status
from order_api.orders.metrics import OrderMetrics
from order_api.orders.models import AllocationState, Order, OrderStatus
from order_api.orders.repository import take_moments
from order_api.orders.untouched import report_untouched_orders
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import Database, utcnow
from servicekit.errors import DomainError, PeerAnswerInvalidError
from servicekit.workers import PeriodicWorker

log = logging.getLogger("order_api.workers")
BATCH = 100
EXPIRING = (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED, OrderStatus.AWAITING_DEPOSIT)
RECONCILE_GRACE = timedelta(seconds=5)


async def _claim_batch(
    session: AsyncSession, *criteria: ColumnElement[bool], oldest_first: InstrumentedAttribute[Any]
) -> Sequence[Order]:
    """Up to ``BATCH`` orders matching ``criteria``, oldest first, locked for this transaction; orders another
    replica holds are skipped (it is working on them)."""
    query = select(Order).where(*criteria).order_by(oldest_first).limit(BATCH)
    return (await session.execute(query.with_for_update(skip_locked=True))).scalars().all()


async def expire_overdue_orders(
    *, database: Database, protection: DataProtection, metrics: OrderMetrics | None = None
) -> int:
    """Expire every open order past its deadline; returns how many."""
    now = utcnow()
    async with database.sessionmaker.begin() as session:
        orders = await _claim_batch(
            session,
            Order.status.in_([s.value for s in EXPIRING]),
            Order.expires_at <= now,
            oldest_first=Order.expires_at,
        )
        for order in orders:
            await change_status(
                session, protection=protection, order=order, to=OrderStatus.EXPIRED, actor=SYSTEM_EXPIRY
            )
    if orders:
        log.info("orders expired", extra={"count": len(orders)})
        if metrics is not None:
            metrics.order_closed("expired", len(orders))
    return len(orders)


async def reconcile_pending_allocations(
    *, database: Database, wallet_pool: WalletPoolClient, settings: Settings, protection: DataProtection
) -> int:
    """Ask wallet-pool again for orders it never answered for; returns how many were settled.

    One transaction per order, holding only that order's row (``SKIP LOCKED``, so replicas share the work)
    across its wallet-pool call. An outage ends the pass: wallet-pool is still away. An answer that cannot be
    used (``clients.wallet_pool.checked_allocation``, or an address another open order holds) leaves that
    order pending, stores nothing, and the pass goes on with the next order.
    """
    settled = 0
    cutoff = utcnow() - RECONCILE_GRACE
    after: tuple[object, str] | None = None  # the last order skipped for an unusable answer
    for _ in range(BATCH):
        async with database.sessionmaker.begin() as session:
            query = select(Order).where(
                Order.allocation_state == AllocationState.PENDING.value,
                Order.status == OrderStatus.AWAITING_ADDRESS.value,
                Order.created_at <= cutoff,
            )
            if after is not None:
                query = query.where(
                    or_(Order.created_at > after[0], and_(Order.created_at == after[0], Order.id > after[1]))
                )
            order = (
                await session.execute(
                    query.order_by(Order.created_at, Order.id).limit(1).with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if order is None:
                break
            try:
                allocation = await wallet_pool.allocate(
                    order_id=order.id,
                    currency=order.from_currency,
                    network=order.from_network,
                    priority=order.priority,
                )
                # An order announced without its address gets "your address is ready"; one never announced,
                # order.created (with the address).
                await apply_allocation(
                    session, order=order, allocation=allocation, settings=settings, protection=protection
                )
            except PeerAnswerInvalidError as exc:
                log_unusable_answer(exc, order_id=order.id)
                after = (order.created_at, order.id)
                continue
            except DomainError as exc:
                log.warning(
                    "wallet-pool still unreachable; will retry",
                    extra={"order_id": order.id, "error": str(exc)},
                )
                break
            await announce_order(session, protection=protection, order=order)
            settled += 1
    if settled:
        log.info("pending allocations reconciled", extra={"count": settled})
    return settled


async def announce_silent_orders(
    *, database: Database, settings: Settings, protection: DataProtection
) -> int:
    """Announce every order whose ``order.created`` never went out although the request that wrote it can no
    longer be running (it died between writing the order and announcing it); returns how many.

    As the order is now: ``awaiting_address`` if wallet-pool has not answered for it yet (the reconciler then
    brings the address, and "your address is ready"). ``announce_order`` writes the event only where
    ``announced_at`` is still empty, so a late intake, a recovering retry or another replica never repeats it.
    """
    abandoned_before = intake_abandoned_before(now=utcnow(), budget_seconds=settings.intake_budget_seconds)
    async with database.sessionmaker.begin() as session:
        orders = await _claim_batch(
            session,
            Order.announced_at.is_(None),
            Order.created_at <= abandoned_before,
            oldest_first=Order.created_at,
        )
        for order in orders:
            await announce_order(session, protection=protection, order=order)
    if orders:
        log.warning("orders announced that intake had left silent", extra={"count": len(orders)})
    return len(orders)


async def sweep_idle_assignments(
    *, database: Database, settings: Settings, protection: DataProtection
) -> int:
    """One pass of the assignment-timeout worker, in its own transaction."""
    async with database.sessionmaker.begin() as session:
        return await return_idle_assignments(session, settings=settings, protection=protection)


async def auto_assign_orders(
    *, database: Database, settings: Settings, protection: DataProtection, metrics: OrderMetrics | None = None
) -> int:
    """One pass of the auto-assignment worker: lapse the untouched assignments first (their orders may then
    go to someone else), then each takeable order in a transaction of its own (``operators.assignment``);
    returns how many orders were assigned. An assignment is a take: the first one of an order is timed
    (``order_take_seconds``) once committed."""
    async with database.sessionmaker.begin() as session:
        await assignment.lapse_untouched_assignments(session, settings=settings, protection=protection)
        if not settings.auto_assign:  # switched off: what was assigned before still lapses
            return 0
        order_ids = await assignment.orders_to_assign(session, settings=settings)
    assigned = 0
    for order_id in order_ids:
        first_take: Order | None = None
        async with database.sessionmaker.begin() as session:
            if await assignment.auto_assign(
                session, settings=settings, protection=protection, order_id=order_id
            ):
                assigned += 1
                takes, _ = await take_moments(session, order_id=order_id)
                first_take = await session.get(Order, order_id) if takes == 1 else None
        if metrics is not None and first_take is not None:
            metrics.order_taken(address_assigned_at=first_take.address_assigned_at, first_take=True)
    return assigned


async def watch_untouched_orders(*, database: Database, settings: Settings) -> int:
    """One look at the orders nobody took, in its own transaction; returns how many reports were written."""
    async with database.sessionmaker.begin() as session:
        return 0 if await report_untouched_orders(session, settings=settings) is None else 1


def order_sweeps(context: OrderApiContext) -> list[PeriodicWorker]:
    """The sweeps, each a worker of its own (one failing never holds up the others), built with what they
    need of order-api's context."""
    database, settings, protection = context.database, context.settings, context.protection
    every = settings.sweep_seconds
    return [
        PeriodicWorker(
            name="auto-assignment",
            job=lambda: auto_assign_orders(
                database=database, settings=settings, protection=protection, metrics=context.metrics
            ),
            interval_seconds=every,
        ),
        PeriodicWorker(
            name="order-expiry",
            job=lambda: expire_overdue_orders(
                database=database, protection=protection, metrics=context.metrics
            ),
            interval_seconds=every,
        ),
        PeriodicWorker(
            name="allocation-reconciler",
            job=lambda: reconcile_pending_allocations(
                database=database, wallet_pool=context.wallet_pool, settings=settings, protection=protection
            ),
            interval_seconds=every,
        ),
        PeriodicWorker(
            name="order-announcer",
            job=lambda: announce_silent_orders(database=database, settings=settings, protection=protection),
            interval_seconds=every,
        ),
        PeriodicWorker(
            name="assignment-timeout",
            job=lambda: sweep_idle_assignments(database=database, settings=settings, protection=protection),
            interval_seconds=every,
        ),
        PeriodicWorker(
            name="untouched-orders-watch",
            job=lambda: watch_untouched_orders(database=database, settings=settings),
            interval_seconds=every,
        ),
    ]
