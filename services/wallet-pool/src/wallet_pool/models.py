"""Every table of wallet-pool, imported in one place for Alembic and tests."""

from wallet_pool.allocations.models import Allocation, WaitQueueEntry
from wallet_pool.db import inbox, metadata, outbox
from wallet_pool.levels.models import PoolLevel
from wallet_pool.wallets.models import Wallet

__all__ = ["Allocation", "PoolLevel", "WaitQueueEntry", "Wallet", "inbox", "metadata", "outbox"]
