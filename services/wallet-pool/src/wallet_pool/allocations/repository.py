"""Allocation and wait-queue rows, in SQLAlchemy Core (the hot paths). Repositories only execute."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import driver, insert_ignoring
from wallet_pool.allocations.models import AllocationStatus, Priority, allocation_table, wait_queue_table
from wallet_pool.pools import Pool
from wallet_pool.wallets.models import WalletStatus, wallet_table
from wallet_pool.wallets.repository import HandedWallet, ReservedWallet

a = allocation_table
q = wait_queue_table


@dataclass(frozen=True, slots=True)
class AllocationView:
    """One order as wallet-pool sees it, with its queue position when it waits."""

    order_id: str
    currency: str | None
    network: str | None
    priority: Priority
    status: AllocationStatus
    address: str | None
    handed_to_order_id: str | None
    enqueued_at: datetime | None
    allocated_at: datetime | None
    released_at: datetime | None
    position: int | None
    recent_releases: int = 0

    @property
    def pool(self) -> Pool | None:
        if self.currency is None or self.network is None:
            return None
        return Pool(self.currency, self.network)


# The common allocation as one statement: the pool's wallet free the longest (as ``wallets.reserve_free_wallet``
# picks it, nobody waiting), the order's allocation row created holding it, and the wallet reserved for it.
# The wallet is only row-locked until the allocation row is in: when the order id is known already (a repeat,
# a concurrent duplicate, a tombstone) the insert waits for its first writer and does nothing, and so does the
# reservation. The status literals keep the pick on the partial index ``ix_wallet_free_fifo``.
_ALLOCATE_FREE_WALLET = """
WITH pick AS (
    SELECT id, address FROM wallet
    WHERE status = 'free' AND currency = $2 AND network = $3
      AND (released_at IS NULL OR released_at <= $6)
      AND NOT EXISTS (SELECT 1 FROM wait_queue_entry WHERE currency = $2 AND network = $3)
    ORDER BY released_at ASC NULLS FIRST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    INSERT INTO allocation (order_id, currency, network, priority, status, wallet_id, address,
                            requested_at, allocated_at)
    SELECT $1, $2, $3, $4, 'allocated', pick.id, pick.address, $5, $5 FROM pick
    ON CONFLICT (order_id) DO NOTHING
    RETURNING wallet_id
)
UPDATE wallet
SET status = 'reserved', order_id = $1, reserved_at = $5, allocation_count = wallet.allocation_count + 1
FROM claimed
WHERE wallet.id = claimed.wallet_id
RETURNING wallet.id, wallet.address
"""


async def allocate_free_wallet_at_once(
    session: AsyncSession,
    *,
    order_id: str,
    pool: Pool,
    priority: Priority,
    now: datetime,
    rested_before: datetime,
) -> ReservedWallet | None:
    """The common allocation in one statement and one round trip (PostgreSQL): a new order, a free wallet,
    nobody waiting. ``None`` when that is not the case (a known order, no free wallet, a queue, SQLite): then
    nothing was written and the caller takes the general path (``claim_order`` ...)."""
    sql = driver(session)
    if sql is None:
        return None
    row = await sql.fetchrow(
        "allocate free wallet",
        _ALLOCATE_FREE_WALLET,
        order_id,
        pool.currency,
        pool.network,
        int(priority),
        now,
        rested_before,
    )
    return None if row is None else ReservedWallet(id=row["id"], address=row["address"])


async def claim_order(
    session: AsyncSession, *, order_id: str, pool: Pool, priority: Priority, now: datetime
) -> bool:
    """Create the order's allocation row, as ``queued`` until it is given a wallet; ``False`` when the order id
    is known already. The primary key serialises concurrent requests for one order: a second one waits here
    until the first commits, then finds its row."""
    statement = insert_ignoring(
        session,
        a,
        {
            "order_id": order_id,
            "currency": pool.currency,
            "network": pool.network,
            "priority": int(priority),
            "status": AllocationStatus.QUEUED.value,
            "requested_at": now,
        },
        conflict=["order_id"],
    ).returning(a.c.order_id)
    return (await session.execute(statement)).first() is not None


async def record_tombstone(session: AsyncSession, *, order_id: str, now: datetime) -> bool:
    """Close an order id wallet-pool never saw, so a late allocation for it is refused; ``False`` when the
    order id turned up meanwhile (read it again)."""
    statement = insert_ignoring(
        session,
        a,
        {
            "order_id": order_id,
            "priority": int(Priority.NORMAL),
            "status": AllocationStatus.RELEASED.value,
            "requested_at": now,
            "released_at": now,
        },
        conflict=["order_id"],
    ).returning(a.c.order_id)
    return (await session.execute(statement)).first() is not None


async def mark_allocated(
    session: AsyncSession, *, order_id: str, wallet: ReservedWallet, now: datetime
) -> None:
    await session.execute(
        update(a)
        .where(a.c.order_id == order_id)
        .values(
            status=AllocationStatus.ALLOCATED.value,
            wallet_id=wallet.id,
            address=wallet.address,
            allocated_at=now,
        )
    )


async def enqueue(
    session: AsyncSession, *, order_id: str, pool: Pool, priority: Priority, now: datetime
) -> None:
    """Put the order at the back of its priority class. The caller holds the pool lock, so ``now`` (taken
    under it) orders the queue the way the lock ordered the requests."""
    await session.execute(
        q.insert().values(
            order_id=order_id,
            currency=pool.currency,
            network=pool.network,
            priority=int(priority),
            enqueued_at=now,
        )
    )
    await session.execute(update(a).where(a.c.order_id == order_id).values(enqueued_at=now))


async def assign_from_queue(session: AsyncSession, *, wallet: HandedWallet, now: datetime) -> None:
    """The order at the head of the queue got ``wallet``: out of the queue, allocated."""
    await session.execute(delete(q).where(q.c.order_id == wallet.order_id))
    await mark_allocated(
        session,
        order_id=wallet.order_id,
        wallet=ReservedWallet(id=wallet.id, address=wallet.address),
        now=now,
    )


async def leave_queue(session: AsyncSession, *, order_id: str) -> None:
    await session.execute(delete(q).where(q.c.order_id == order_id))


async def close(
    session: AsyncSession,
    *,
    order_id: str,
    now: datetime,
    address: str | None,
    handed_to_order_id: str | None,
) -> None:
    await session.execute(
        update(a)
        .where(a.c.order_id == order_id)
        .values(
            status=AllocationStatus.RELEASED.value,
            wallet_id=None,
            address=address,
            handed_to_order_id=handed_to_order_id,
            released_at=now,
        )
    )


async def allocation_view(
    session: AsyncSession, *, order_id: str, for_update: bool = False, releases_since: datetime | None = None
) -> AllocationView | None:
    """The order's allocation and, when it waits, how many orders are ahead of it and (with
    ``releases_since``) how many wallets its pool got back since then: one statement, so they agree."""
    mine = q.alias("mine")
    ahead = (
        select(func.count())
        .select_from(q)
        .where(
            q.c.currency == mine.c.currency,
            q.c.network == mine.c.network,
            or_(
                q.c.priority > mine.c.priority,
                and_(
                    q.c.priority == mine.c.priority,
                    or_(
                        q.c.enqueued_at < mine.c.enqueued_at,
                        and_(q.c.enqueued_at == mine.c.enqueued_at, q.c.id < mine.c.id),
                    ),
                ),
            ),
        )
        .scalar_subquery()
    )
    recent: Any = literal(0)
    if releases_since is not None:
        back = a.alias("back")
        recent = case(
            (
                mine.c.id.is_not(None),
                select(func.count())
                .select_from(back)
                .where(
                    back.c.released_at >= releases_since,
                    back.c.currency == a.c.currency,
                    back.c.network == a.c.network,
                    back.c.address.is_not(None),
                )
                .scalar_subquery(),
            ),
            else_=0,
        )
    statement = (
        select(
            a.c.order_id,
            a.c.currency,
            a.c.network,
            a.c.priority,
            a.c.status,
            a.c.address,
            a.c.handed_to_order_id,
            a.c.enqueued_at,
            a.c.allocated_at,
            a.c.released_at,
            mine.c.id.label("entry_id"),
            ahead.label("ahead"),
            recent.label("recent_releases"),
        )
        .select_from(a.outerjoin(mine, mine.c.order_id == a.c.order_id))
        .where(a.c.order_id == order_id)
    )
    if for_update:
        statement = statement.with_for_update(of=a)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    status = AllocationStatus(row.status)
    position = int(row.ahead) + 1 if status is AllocationStatus.QUEUED and row.entry_id is not None else None
    return AllocationView(
        order_id=row.order_id,
        currency=row.currency,
        network=row.network,
        priority=Priority(row.priority),
        status=status,
        address=row.address,
        handed_to_order_id=row.handed_to_order_id,
        enqueued_at=row.enqueued_at,
        allocated_at=row.allocated_at,
        released_at=row.released_at,
        position=position,
        recent_releases=int(row.recent_releases or 0),
    )


async def pools_where_orders_wait_beside_free_wallets(session: AsyncSession) -> list[Pool]:
    """Pools with waiting orders and at least one free wallet (resting or not): the sweeper's work list."""
    w = wallet_table
    statement = (
        select(q.c.currency, q.c.network)
        .where(
            exists().where(
                w.c.status == WalletStatus.FREE.value,
                w.c.currency == q.c.currency,
                w.c.network == q.c.network,
            )
        )
        .group_by(q.c.currency, q.c.network)
    )
    return [Pool(currency, network) for currency, network in (await session.execute(statement)).all()]
