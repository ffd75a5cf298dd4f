"""The pool levels' queries: a pool's wallets by status and its queue length, and the level row locked for
the transaction that may announce a crossing. Repositories only execute; the caller commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import insert_ignoring
from wallet_pool.allocations.models import wait_queue_table
from wallet_pool.levels.models import Level, PoolLevel, pool_level_table
from wallet_pool.pools import Pool
from wallet_pool.wallets.models import WalletStatus, wallet_table


async def wallets_by_status(session: AsyncSession, *, pool: Pool) -> tuple[int, int, int, int]:
    """The pool's wallets: ``(total, free, reserved, disabled)``, read now."""
    w = wallet_table
    in_pool = (w.c.currency == pool.currency) & (w.c.network == pool.network)
    total, free, reserved, disabled = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(w.c.status == WalletStatus.FREE.value),
                func.count().filter(w.c.status == WalletStatus.RESERVED.value),
                func.count().filter(w.c.status == WalletStatus.DISABLED.value),
            ).where(in_pool)
        )
    ).one()
    return int(total), int(free), int(reserved), int(disabled)


async def queue_length(session: AsyncSession, *, pool: Pool) -> int:
    q = wait_queue_table
    queued = await session.scalar(
        select(func.count()).where(q.c.currency == pool.currency, q.c.network == pool.network)
    )
    return int(queued or 0)


async def queue_figures(session: AsyncSession, *, pool: Pool) -> tuple[int, datetime | None]:
    """The pool's wait queue: ``(length, when the longest-waiting order was queued)``, read now."""
    q = wait_queue_table
    length, oldest = (
        await session.execute(
            select(func.count(), func.min(q.c.enqueued_at)).where(
                q.c.currency == pool.currency, q.c.network == pool.network
            )
        )
    ).one()
    return int(length), oldest


async def pools_with_queue(session: AsyncSession) -> list[Pool]:
    q = wait_queue_table
    rows = await session.execute(select(q.c.currency, q.c.network).distinct())
    return [Pool(currency, network) for currency, network in rows]


async def locked_pool_level(session: AsyncSession, *, pool: Pool, now: datetime) -> PoolLevel:
    """The level last announced for ``pool`` (``ok`` for a pool never seen), row-locked until the transaction
    ends: replicas watching side by side take turns."""
    key = {"currency": pool.currency, "network": pool.network}
    await session.execute(
        insert_ignoring(
            session,
            pool_level_table,
            {**key, "level": Level.OK.value, "free": 0, "usable": 0, "changed_at": now},
        )
    )
    state: PoolLevel = (
        await session.execute(select(PoolLevel).filter_by(**key).with_for_update())
    ).scalar_one()
    return state


async def pools_watched_before(session: AsyncSession) -> list[Pool]:
    """The pools a watch has looked at (a row in ``pool_level``): one whose queue emptied and that has no
    wallets is still looked at, so what was announced about it is cleared."""
    p = pool_level_table
    rows = await session.execute(select(p.c.currency, p.c.network))
    return [Pool(currency, network) for currency, network in rows]


async def pools_with_wallets(session: AsyncSession) -> list[Pool]:
    w = wallet_table
    rows = await session.execute(select(w.c.currency, w.c.network).distinct())
    return [Pool(currency, network) for currency, network in rows]
