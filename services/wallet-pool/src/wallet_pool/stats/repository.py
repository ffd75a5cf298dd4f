"""The grouped queries behind pool statistics (each one statement over the whole pool)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import epoch_seconds
from wallet_pool.allocations.models import allocation_table, wait_queue_table
from wallet_pool.pools import Pool
from wallet_pool.wallets.models import WalletStatus, wallet_table


@dataclass(frozen=True, slots=True)
class WalletCounts:
    total: int = 0
    free: int = 0
    reserved: int = 0
    disabled: int = 0


@dataclass(frozen=True, slots=True)
class QueueFigures:
    length: int = 0
    oldest_enqueued_at: datetime | None = None
    mean_enqueued_epoch: float | None = None


@dataclass(frozen=True, slots=True)
class RecentActivity:
    allocations: int = 0
    releases: int = 0


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


async def wallet_counts(session: AsyncSession) -> dict[Pool, WalletCounts]:
    w = wallet_table
    rows = await session.execute(
        select(
            w.c.currency,
            w.c.network,
            func.count(),
            _count_if(w.c.status == WalletStatus.FREE.value),
            _count_if(w.c.status == WalletStatus.RESERVED.value),
            _count_if(w.c.status == WalletStatus.DISABLED.value),
        ).group_by(w.c.currency, w.c.network)
    )
    return {
        Pool(currency, network): WalletCounts(int(total), int(free), int(reserved), int(disabled))
        for currency, network, total, free, reserved, disabled in rows
    }


async def queue_figures(session: AsyncSession) -> dict[Pool, QueueFigures]:
    q = wait_queue_table
    epoch = epoch_seconds(q.c.enqueued_at)
    rows = await session.execute(
        select(q.c.currency, q.c.network, func.count(), func.min(q.c.enqueued_at), func.avg(epoch)).group_by(
            q.c.currency, q.c.network
        )
    )
    return {
        Pool(currency, network): QueueFigures(
            int(length), oldest, float(mean_epoch) if mean_epoch is not None else None
        )
        for currency, network, length, oldest, mean_epoch in rows
    }


async def recent_activity(session: AsyncSession, *, since: datetime) -> dict[Pool, RecentActivity]:
    """Allocations (at once or from the queue) and wallet releases since ``since``, per pool."""
    a = allocation_table
    allocated = a.c.allocated_at >= since
    released = and_(a.c.released_at >= since, a.c.address.is_not(None))
    rows = await session.execute(
        select(a.c.currency, a.c.network, _count_if(allocated), _count_if(released))
        .where(a.c.currency.is_not(None), or_(allocated, released))
        .group_by(a.c.currency, a.c.network)
    )
    return {
        Pool(currency, network): RecentActivity(int(allocations), int(releases))
        for currency, network, allocations, releases in rows
    }


# -- queue analytics -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuedOrder:
    """An order that waited in the queue: when it entered, got its address, and was released (if it did)."""

    pool: Pool
    enqueued_at: datetime
    allocated_at: datetime | None
    released_at: datetime | None


@dataclass(frozen=True, slots=True)
class Demand:
    """What a pool served in a window: addresses handed out, queued orders that left without one, and the
    wallets given back with the total time they were held."""

    served: int = 0
    abandoned: int = 0
    releases: int = 0
    held_seconds: float = 0.0


async def queued_orders(
    session: AsyncSession, *, since: datetime, until: datetime, by: Literal["enqueued", "allocated"]
) -> list[QueuedOrder]:
    """The orders that entered the queue (``by="enqueued"``, on ``ix_allocation_enqueued_at``) or were handed
    an address from it (``by="allocated"``, on ``ix_allocation_allocated_at``) in ``[since, until)``."""
    a = allocation_table
    moment = a.c.enqueued_at if by == "enqueued" else a.c.allocated_at
    rows = await session.execute(
        select(a.c.currency, a.c.network, a.c.enqueued_at, a.c.allocated_at, a.c.released_at).where(
            moment >= since, moment < until, a.c.enqueued_at.is_not(None), a.c.currency.is_not(None)
        )
    )
    return [
        QueuedOrder(Pool(currency, network), enqueued_at, allocated_at, released_at)
        for currency, network, enqueued_at, allocated_at, released_at in rows
    ]


async def demand(session: AsyncSession, *, since: datetime, until: datetime) -> dict[Pool, Demand]:
    """Per pool, in ``[since, until)``: addresses handed out (at once or from the queue), queued orders released
    before they got one, and wallets given back with the sum of their holding times (allocation → release)."""
    a = allocation_table
    served = and_(a.c.allocated_at >= since, a.c.allocated_at < until)
    released = and_(a.c.released_at >= since, a.c.released_at < until)
    gave_back = and_(released, a.c.allocated_at.is_not(None))
    abandoned = and_(released, a.c.allocated_at.is_(None), a.c.enqueued_at.is_not(None))
    held = epoch_seconds(a.c.released_at) - epoch_seconds(a.c.allocated_at)
    rows = await session.execute(
        select(
            a.c.currency,
            a.c.network,
            _count_if(served),
            _count_if(abandoned),
            _count_if(gave_back),
            func.coalesce(func.sum(case((gave_back, held), else_=0.0)), 0.0),
        )
        .where(a.c.currency.is_not(None), or_(served, released))
        .group_by(a.c.currency, a.c.network)
    )
    return {
        Pool(currency, network): Demand(int(n_served), int(n_abandoned), int(n_releases), float(seconds))
        for currency, network, n_served, n_abandoned, n_releases, seconds in rows
    }
