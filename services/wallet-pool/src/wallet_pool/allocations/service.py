"""Allocating deposit addresses to orders, the wait queue, and release.

How it stays correct under concurrency (see :mod:`wallet_pool.pools` for the lock itself):

- **An order never holds two wallets, and never asks twice.** Every allocation inserts the order's
  ``allocation`` row (``ON CONFLICT DO NOTHING``) before it keeps a wallet: a concurrent request for the same
  order waits on that primary key until the first commits, then reads its answer. The common case (a new
  order, a free wallet, nobody waiting) is one statement on PostgreSQL that picks the wallet, inserts the row
  holding it and reserves it only if the insert went in (``repository.allocate_free_wallet_at_once``);
  anything else takes the general path below. The unique index on ``wallet.order_id`` backs this up.
- **A wallet is never reserved for two orders.** Wallets are taken by one ``UPDATE … WHERE id = (SELECT …
  FOR UPDATE SKIP LOCKED)`` whose pick only sees free wallets; the row lock makes the second taker skip it.
- **No order waits while a wallet of its pool is free.** The common path (a free wallet, nobody waiting) takes
  no pool lock. When it finds no wallet, the allocation takes the pool lock,
  queues the order and serves the queue; every path that frees a wallet takes the same lock before it
  looks at the queue. A cool-down (``reuse_cooldown_seconds``) is the one allowed exception: the wallet rests,
  and the queue sweeper hands it over once it may be reused.
- **The queue is served in order.** Only holders of the pool lock add to or serve the queue, always its head
  (``priority DESC, enqueued_at, id``), and the common path leaves free wallets alone while anyone waits.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import WalletAssigned
from servicekit.db import utcnow
from servicekit.outbox import publish
from wallet_pool.allocations import repository
from wallet_pool.allocations.errors import (
    AllocationClosedError,
    AllocationMismatchError,
    AllocationNotFoundError,
)
from wallet_pool.allocations.models import AllocationStatus, Priority
from wallet_pool.allocations.repository import AllocationView
from wallet_pool.allocations.schemas import (
    AllocationAllocatedRead,
    AllocationQueuedRead,
    AllocationReleasedRead,
    AllocationReleaseRead,
)
from wallet_pool.db import outbox
from wallet_pool.metrics import PoolMetrics
from wallet_pool.pools import Pool, lock_pool, resolve_pool, try_lock_pool
from wallet_pool.settings import Settings
from wallet_pool.wallets import repository as wallets
from wallet_pool.wallets.models import WalletStatus
from wallet_pool.wallets.repository import ReservedWallet

log = logging.getLogger("wallet_pool.allocations")


async def allocate_wallet(
    *,
    session: AsyncSession,
    settings: Settings,
    order_id: str,
    currency: str,
    network: str | None,
    priority: Priority,
    metrics: PoolMetrics | None = None,
) -> AllocationAllocatedRead | AllocationQueuedRead:
    """Give the order the wallet of its pool free the longest, or queue it when none is free. Asking again
    for the same order answers its current state; a released order is refused."""
    pool = resolve_pool(currency=currency, network=network)
    now = utcnow()
    rested_before = now - settings.reuse_cooldown(pool.currency)
    wallet = await repository.allocate_free_wallet_at_once(
        session, order_id=order_id, pool=pool, priority=priority, now=now, rested_before=rested_before
    )
    if wallet is not None:
        if metrics:
            metrics.allocated(pool)
        return _allocated(order_id=order_id, pool=pool, address=wallet.address, allocated_at=now)

    if not await repository.claim_order(session, order_id=order_id, pool=pool, priority=priority, now=now):
        return await _answer_again(session=session, settings=settings, order_id=order_id, pool=pool)

    wallet = await wallets.reserve_free_wallet(
        session,
        pool=pool,
        order_id=order_id,
        now=now,
        rested_before=rested_before,
        only_when_nobody_waits=True,
    )
    if wallet is not None:
        await repository.mark_allocated(session, order_id=order_id, wallet=wallet, now=now)
        if metrics:
            metrics.allocated(pool)
        return _allocated(order_id=order_id, pool=pool, address=wallet.address, allocated_at=now)

    # No wallet for us without the lock: queue the order, then serve the queue in its order (which may be us).
    await lock_pool(session, pool)
    now = utcnow()
    await repository.enqueue(session, order_id=order_id, pool=pool, priority=priority, now=now)
    served = await serve_waiting_orders(
        session=session, settings=settings, pool=pool, now=now, metrics=metrics, announce_except=order_id
    )
    if order_id in served:
        if metrics:
            metrics.allocated(pool)
        return _allocated(order_id=order_id, pool=pool, address=served[order_id].address, allocated_at=now)
    if metrics:
        metrics.queued(pool)
    view = await _view(session, order_id=order_id, releases_since=now - _window(settings))
    return _queued(settings=settings, view=view)


async def allocation_of(
    *, session: AsyncSession, settings: Settings, order_id: str
) -> AllocationAllocatedRead | AllocationQueuedRead | AllocationReleasedRead:
    """The order's allocation as it stands: holding an address, waiting (with its position), or released."""
    view = await repository.allocation_view(
        session, order_id=order_id, releases_since=utcnow() - _window(settings)
    )
    if view is None:
        raise AllocationNotFoundError(f"wallet-pool has no allocation for order {order_id!r}.")
    if view.status is AllocationStatus.RELEASED:
        return _released(view)
    return _current_answer(settings=settings, view=view)


async def release_allocation(
    *, session: AsyncSession, settings: Settings, order_id: str, metrics: PoolMetrics | None = None
) -> AllocationReleaseRead:
    """Close the order's allocation: its wallet goes back to the pool and, in the same transaction, to the
    order at the head of the pool's queue (announced to order-api as ``wallet.assigned``). A waiting order just
    leaves the queue. Releasing again answers the same; releasing an order id never seen records a tombstone
    so a late allocation for it is refused."""
    view = await repository.allocation_view(session, order_id=order_id)
    while view is None:
        if await repository.record_tombstone(session, order_id=order_id, now=utcnow()):
            log.info("release of an unknown order recorded as a tombstone", extra={"order_id": order_id})
            return AllocationReleaseRead(order_id=order_id, address=None, handed_to_order_id=None)
        view = await repository.allocation_view(session, order_id=order_id)  # created meanwhile
    pool = view.pool
    if view.status is AllocationStatus.RELEASED or pool is None:
        return _release_answer(view)

    await lock_pool(session, pool)
    view = await _view(session, order_id=order_id, for_update=True)  # again, under the lock
    if view.status is AllocationStatus.RELEASED:
        return _release_answer(view)
    now = utcnow()
    if view.status is AllocationStatus.QUEUED:
        await repository.leave_queue(session, order_id=order_id)
        await repository.close(session, order_id=order_id, now=now, address=None, handed_to_order_id=None)
        if metrics:
            metrics.released(pool, held="queue_place")
        return AllocationReleaseRead(order_id=order_id, address=None, handed_to_order_id=None)

    freed = await wallets.free_wallet_of(session, order_id=order_id, now=now)
    handed_to: str | None = None
    if freed is not None and freed.status is WalletStatus.FREE:
        served = await serve_waiting_orders(
            session=session, settings=settings, pool=pool, now=now, metrics=metrics
        )
        handed_to = next((order for order, wallet in served.items() if wallet.id == freed.id), None)
    address = freed.address if freed is not None else view.address
    await repository.close(session, order_id=order_id, now=now, address=address, handed_to_order_id=handed_to)
    if metrics:
        metrics.released(pool, held="wallet")
    return AllocationReleaseRead(order_id=order_id, address=address, handed_to_order_id=handed_to)


async def serve_waiting_orders(
    *,
    session: AsyncSession,
    settings: Settings,
    pool: Pool,
    now: datetime,
    metrics: PoolMetrics | None = None,
    announce_except: str | None = None,
) -> dict[str, ReservedWallet]:
    """Hand the pool's free, rested wallets to its waiting orders, head of the queue first, until one runs
    out; each hand-over is announced to order-api (``wallet.assigned``, through the outbox, in this
    transaction) except for ``announce_except``, the order whose own request is being answered.

    The caller holds the pool lock. Returns order id → wallet for every order served."""
    served: dict[str, ReservedWallet] = {}
    rested_before = now - settings.reuse_cooldown(pool.currency)
    while (
        handed := await wallets.reserve_for_queue_head(
            session, pool=pool, now=now, rested_before=rested_before
        )
    ) is not None:
        await repository.assign_from_queue(session, wallet=handed, now=now)
        served[handed.order_id] = ReservedWallet(id=handed.id, address=handed.address)
        if handed.order_id != announce_except:
            assigned = WalletAssigned(
                order_id=handed.order_id,
                currency=pool.currency,
                network=pool.network,
                address=handed.address,
                assigned_at=now,
            )
            await publish(
                session, outbox, destination="order-api", event=assigned, aggregate_id=handed.order_id
            )
            if metrics:
                metrics.assigned_from_queue(pool)
    if served:
        log.info("wallets handed to waiting orders", extra={"pool": str(pool), "orders": list(served)})
    return served


async def hand_rested_wallets_to_waiting_orders(
    *,
    session: AsyncSession,
    settings: Settings,
    pool: Pool,
    now: datetime | None = None,
    metrics: PoolMetrics | None = None,
) -> int:
    """The sweeper's pass over one pool: wallets whose cool-down has passed go to the orders waiting for them.
    Skips the pool (``0``) when another transaction holds its lock: that one serves the queue itself."""
    if not await try_lock_pool(session, pool):
        return 0
    served = await serve_waiting_orders(
        session=session, settings=settings, pool=pool, now=now or utcnow(), metrics=metrics
    )
    return len(served)


async def pools_to_sweep(*, session: AsyncSession) -> list[Pool]:
    """Pools where orders wait while a wallet is free (resting, or missed): the sweeper's work list."""
    return await repository.pools_where_orders_wait_beside_free_wallets(session)


async def _answer_again(
    *, session: AsyncSession, settings: Settings, order_id: str, pool: Pool
) -> AllocationAllocatedRead | AllocationQueuedRead:
    # the conflicting row is committed by now
    view = await _view(session, order_id=order_id, releases_since=utcnow() - _window(settings))
    if view.status is AllocationStatus.RELEASED:
        raise AllocationClosedError(
            f"Order {order_id!r} was released; an order never gets a second address.",
            extra={"order_id": order_id},
        )
    if view.pool != pool:
        raise AllocationMismatchError(
            f"Order {order_id!r} already asked for {view.pool}, not {pool}.", extra={"order_id": order_id}
        )
    return _current_answer(settings=settings, view=view)


def _current_answer(
    *, settings: Settings, view: AllocationView
) -> AllocationAllocatedRead | AllocationQueuedRead:
    if view.status is AllocationStatus.ALLOCATED and view.address and view.allocated_at:
        return _allocated(
            order_id=view.order_id, pool=_pool_of(view), address=view.address, allocated_at=view.allocated_at
        )
    return _queued(settings=settings, view=view)


def _queued(*, settings: Settings, view: AllocationView) -> AllocationQueuedRead:
    pool = _pool_of(view)
    if view.enqueued_at is None or view.position is None:
        raise RuntimeError(f"allocation {view.order_id!r} is queued but not in the queue")
    releases = view.recent_releases
    window = _window(settings).total_seconds()
    estimate = math.ceil(view.position * window / releases) if releases else None
    return AllocationQueuedRead(
        order_id=view.order_id,
        currency=pool.currency,
        network=pool.network,
        position=view.position,
        estimated_wait_seconds=estimate,
        enqueued_at=view.enqueued_at,
    )


def _allocated(*, order_id: str, pool: Pool, address: str, allocated_at: datetime) -> AllocationAllocatedRead:
    return AllocationAllocatedRead(
        order_id=order_id,
        currency=pool.currency,
        network=pool.network,
        address=address,
        allocated_at=allocated_at,
    )


def _released(view: AllocationView) -> AllocationReleasedRead:
    return AllocationReleasedRead(
        order_id=view.order_id,
        currency=view.currency,
        network=view.network,
        address=view.address,
        released_at=view.released_at or utcnow(),
    )


async def _view(
    session: AsyncSession, *, order_id: str, for_update: bool = False, releases_since: datetime | None = None
) -> AllocationView:
    """The allocation of an order this transaction knows exists (allocation rows are never deleted)."""
    view = await repository.allocation_view(
        session, order_id=order_id, for_update=for_update, releases_since=releases_since
    )
    if view is None:
        raise AllocationNotFoundError(f"wallet-pool has no allocation for order {order_id!r}.")
    return view


def _window(settings: Settings) -> timedelta:
    """The recent window the estimated wait is measured over."""
    return timedelta(seconds=settings.stats_window_seconds)


def _pool_of(view: AllocationView) -> Pool:
    pool = view.pool
    if pool is None:  # only tombstones lack a pool, and they are released
        raise RuntimeError(f"allocation {view.order_id!r} has no pool")
    return pool


def _release_answer(view: AllocationView) -> AllocationReleaseRead:
    return AllocationReleaseRead(
        order_id=view.order_id, address=view.address, handed_to_order_id=view.handed_to_order_id
    )
