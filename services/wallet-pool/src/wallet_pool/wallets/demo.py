"""Demo wallets for a fresh desk (``make run``): a few free addresses per supported currency and network.

The addresses come from :func:`coin_addresses.demo_address`: valid and deterministic, but
hashes that nobody holds a key for. They let a newcomer create orders, see allocation and the queue at work,
and must never be handed out for a real deposit, which is why seeding only ever touches an empty pool.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import SUPPORTED, demo_address
from wallet_pool.wallets import repository
from wallet_pool.wallets.models import Wallet, WalletStatus


async def seed_demo_wallets(*, session: AsyncSession, per_currency: int) -> int:
    """Give an empty pool ``per_currency`` free demo wallets for every (currency, network) the desk supports.

    Returns how many wallets were added: ``0`` when the pool already has any wallet (whatever its status),
    so running it again, or against a real pool, changes nothing. Only flushes; the caller commits.
    """
    if per_currency < 1:
        raise ValueError(f"per_currency must be at least 1, got {per_currency}")
    if await repository.has_any_wallet(session):
        return 0
    wallets = [
        Wallet(
            currency=currency,
            network=network,
            address=demo_address(currency=currency, network=network, seed=seed),
            status=WalletStatus.FREE.value,
        )
        for currency, networks in SUPPORTED.items()
        for network in networks
        for seed in range(1, per_currency + 1)
    ]
    session.add_all(wallets)
    await session.flush()
    return len(wallets)
