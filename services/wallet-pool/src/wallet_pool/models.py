"""Every table of wallet-pool, imported in one place for Alembic and tests."""

from wallet_pool.db import metadata, outbox
from wallet_pool.wallets.models import Wallet

__all__ = ["Wallet", "metadata", "outbox"]
