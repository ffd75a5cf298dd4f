"""Pool statistics, computed in one grouped query."""

from __future__ import annotations

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import utcnow
from wallet_pool.stats.schemas import CurrencyPoolRead, PoolStatsRead
from wallet_pool.wallets.models import Wallet, WalletStatus


def _count(status: WalletStatus) -> ColumnElement[int]:
    return func.sum(case((Wallet.status == status.value, 1), else_=0))


async def pool_stats(*, session: AsyncSession) -> PoolStatsRead:
    """Per currency: total, free, reserved and disabled wallets, and the wait queue."""
    rows = (
        await session.execute(
            select(
                Wallet.currency,
                func.count(),
                _count(WalletStatus.FREE),
                _count(WalletStatus.RESERVED),
                _count(WalletStatus.DISABLED),
            )
            .group_by(Wallet.currency)
            .order_by(Wallet.currency)
        )
    ).all()
    currencies = [
        CurrencyPoolRead(
            currency=currency,
            total=int(total),
            free=int(free or 0),
            reserved=int(reserved or 0),
            disabled=int(disabled or 0),
            queue_length=0,
            oldest_wait_seconds=None,
            average_wait_seconds=None,
        )
        for currency, total, free, reserved, disabled in rows
    ]
    return PoolStatsRead(generated_at=utcnow(), currencies=currencies)
