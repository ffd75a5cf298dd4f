"""Wallet rows, in SQLAlchemy Core (the hot paths). Repositories only execute; the request commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, Select, and_, case, exists, false, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import insert_ignoring
from servicekit.pagination import Keyset
from wallet_pool.allocations.models import wait_queue_table
from wallet_pool.pools import Pool
from wallet_pool.wallets.models import WalletStatus, wallet_table

w = wallet_table
q = wait_queue_table
WALLET_COLUMNS = (
    w.c.id,
    w.c.currency,
    w.c.network,
    w.c.address,
    w.c.status,
    w.c.order_id,
    w.c.disable_on_release,
    w.c.reserved_at,
    w.c.released_at,
    w.c.allocation_count,
    w.c.created_at,
)
_LOOKUP_CHUNK = 500
OLDEST_FIRST = Keyset("wallets", w.c.id, newest_first=False)
"""Wallets as listed: by id, so a page stays put while wallets are added."""


@dataclass(frozen=True, slots=True)
class ReservedWallet:
    id: int
    address: str


@dataclass(frozen=True, slots=True)
class HandedWallet:
    id: int
    address: str
    order_id: str


@dataclass(frozen=True, slots=True)
class FreedWallet:
    id: int
    address: str
    status: WalletStatus  # free, or disabled when an operator asked for it while it was reserved


async def pools_of_addresses(session: AsyncSession, addresses: Iterable[str]) -> dict[str, Pool]:
    """Which of ``addresses`` the pool already has, and in which pool."""
    found: dict[str, Pool] = {}
    wanted = list(dict.fromkeys(addresses))
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        chunk = wanted[start : start + _LOOKUP_CHUNK]
        rows = await session.execute(
            select(w.c.address, w.c.currency, w.c.network).where(w.c.address.in_(chunk))
        )
        for address, currency, network in rows:
            found[address] = Pool(currency, network)
    return found


async def insert_free_wallets(
    session: AsyncSession, *, pool: Pool, addresses: Sequence[str], now: datetime
) -> list[RowMapping]:
    """Insert ``addresses`` as free wallets of ``pool``; an address that is already stored (an import racing
    this one in another pool) is skipped, and is missing from the rows returned."""
    if not addresses:
        return []
    statement = insert_ignoring(
        session,
        w,
        [
            {
                "currency": pool.currency,
                "network": pool.network,
                "address": address,
                "status": WalletStatus.FREE.value,
                "disable_on_release": False,
                "allocation_count": 0,
                "created_at": now,
            }
            for address in addresses
        ],
        conflict=["address"],
    ).returning(*WALLET_COLUMNS)
    rows = (await session.execute(statement)).mappings().all()
    return sorted(rows, key=lambda row: int(row["id"]))


async def wallet_page(
    session: AsyncSession,
    *,
    currency: str | None,
    network: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[RowMapping], str | None]:
    """A page of wallets by id, oldest first, and the cursor of the next: stable while wallets are added."""
    statement = select(*WALLET_COLUMNS)
    if currency is not None:
        statement = statement.where(w.c.currency == currency)
    if network is not None:
        statement = statement.where(w.c.network == network)
    if status is not None:
        statement = statement.where(w.c.status == status)
    rows = (
        (await session.execute(OLDEST_FIRST.select(statement, cursor=cursor, limit=limit))).mappings().all()
    )
    return OLDEST_FIRST.cut(rows, limit=limit, position=lambda row: [row["id"]])


async def wallet_by_id(session: AsyncSession, wallet_id: int) -> RowMapping | None:
    return (await session.execute(select(*WALLET_COLUMNS).where(w.c.id == wallet_id))).mappings().first()


async def request_disable(session: AsyncSession, wallet_id: int) -> RowMapping | None:
    """Disable a free wallet now; flag a reserved one to be disabled on release. One statement, so it is
    atomic against a concurrent pick or release of the same wallet (the row lock orders them)."""
    statement = (
        update(w)
        .where(w.c.id == wallet_id)
        .values(
            status=case(
                (w.c.status == WalletStatus.FREE.value, WalletStatus.DISABLED.value), else_=w.c.status
            ),
            disable_on_release=w.c.status == WalletStatus.RESERVED.value,
        )
        .returning(*WALLET_COLUMNS)
    )
    return (await session.execute(statement)).mappings().first()


async def enable(session: AsyncSession, wallet_id: int) -> RowMapping | None:
    """Make a disabled wallet free again, or cancel a pending disable of a reserved one. The caller holds
    the wallet's pool lock (a wallet becoming free is a wallet a waiting order may be owed)."""
    statement = (
        update(w)
        .where(w.c.id == wallet_id)
        .values(
            status=case(
                (w.c.status == WalletStatus.DISABLED.value, WalletStatus.FREE.value), else_=w.c.status
            ),
            disable_on_release=false(),
        )
        .returning(*WALLET_COLUMNS)
    )
    return (await session.execute(statement)).mappings().first()


async def reserve_free_wallet(
    session: AsyncSession,
    *,
    pool: Pool,
    order_id: str,
    now: datetime,
    rested_before: datetime,
    only_when_nobody_waits: bool,
) -> ReservedWallet | None:
    """Reserve the wallet of ``pool`` free the longest (never used first, then by ``released_at``, then id)
    whose cool-down has passed (released at or before ``rested_before``), for ``order_id``.

    One statement: the pick is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent allocations take
    different wallets without waiting on each other. ``only_when_nobody_waits`` (the path without the pool lock)
    leaves the wallet alone when orders wait in this pool: they come first, and are served under the lock."""
    pick = _fifo_pick(pool=pool, rested_before=rested_before)
    if only_when_nobody_waits:
        pick = pick.where(~exists().where(and_(q.c.currency == pool.currency, q.c.network == pool.network)))
    statement = (
        update(w)
        .where(w.c.id == pick.scalar_subquery())
        .values(
            status=WalletStatus.RESERVED.value,
            order_id=order_id,
            reserved_at=now,
            allocation_count=w.c.allocation_count + 1,
        )
        .returning(w.c.id, w.c.address)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else ReservedWallet(id=row.id, address=row.address)


async def reserve_for_queue_head(
    session: AsyncSession, *, pool: Pool, now: datetime, rested_before: datetime
) -> HandedWallet | None:
    """Reserve the wallet of ``pool`` free the longest (and rested) for the order at the head of its queue,
    in one statement; ``None`` when there is no such wallet or nobody waits. The caller holds the pool lock
    (so the head stays the head) and then takes the order out of the queue."""
    head = (
        select(q.c.order_id)
        .where(q.c.currency == pool.currency, q.c.network == pool.network)
        .order_by(q.c.priority.desc(), q.c.enqueued_at, q.c.id)
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        update(w)
        .where(
            w.c.id == _fifo_pick(pool=pool, rested_before=rested_before).scalar_subquery(),
            exists().where(q.c.currency == pool.currency, q.c.network == pool.network),
        )
        .values(
            status=WalletStatus.RESERVED.value,
            order_id=head,
            reserved_at=now,
            allocation_count=w.c.allocation_count + 1,
        )
        .returning(w.c.id, w.c.address, w.c.order_id)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else HandedWallet(id=row.id, address=row.address, order_id=row.order_id)


def _fifo_pick(*, pool: Pool, rested_before: datetime) -> Select[tuple[int]]:
    """The FIFO pick: the pool's wallet free the longest (never used first), rested, not locked by another
    transaction (``FOR UPDATE SKIP LOCKED``; SQLite has a single writer and ignores it)."""
    return (
        select(w.c.id)
        .where(
            w.c.status == WalletStatus.FREE.value,
            w.c.currency == pool.currency,
            w.c.network == pool.network,
            or_(w.c.released_at.is_(None), w.c.released_at <= rested_before),
        )
        .order_by(w.c.released_at.asc().nulls_first(), w.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def free_wallet_of(session: AsyncSession, *, order_id: str, now: datetime) -> FreedWallet | None:
    """Take the wallet back from ``order_id``: free again, or disabled if an operator asked for that while it
    was reserved. The caller holds the pool lock."""
    statement = (
        update(w)
        .where(w.c.order_id == order_id)
        .values(
            status=case((w.c.disable_on_release, WalletStatus.DISABLED.value), else_=WalletStatus.FREE.value),
            disable_on_release=false(),
            order_id=None,
            released_at=now,
        )
        .returning(w.c.id, w.c.address, w.c.status)
    )
    row = (await session.execute(statement)).first()
    return (
        None if row is None else FreedWallet(id=row.id, address=row.address, status=WalletStatus(row.status))
    )


async def has_any_wallet(session: AsyncSession) -> bool:
    """Whether the pool holds any wallet at all, whatever its status."""
    return await session.scalar(select(w.c.id).limit(1)) is not None


async def has_free_wallet(session: AsyncSession, *, pool: Pool, rested_before: datetime) -> bool:
    statement = select(
        exists().where(
            w.c.status == WalletStatus.FREE.value,
            w.c.currency == pool.currency,
            w.c.network == pool.network,
            or_(w.c.released_at.is_(None), w.c.released_at <= rested_before),
        )
    )
    return bool(await session.scalar(statement))
