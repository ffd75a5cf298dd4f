"""A pool: the wallets of one (currency, network), and what must be serialised per pool.

Most work in a pool needs no lock: the FIFO pick over free wallets uses ``FOR UPDATE SKIP LOCKED``, so
concurrent allocations never wait for one another. Two things would race without one, though: a release that
finds the queue empty and frees its wallet, while an allocation that found no free wallet puts its order in
the queue; each commits, and an order waits next to a free wallet. So every path that frees a wallet
(release, enable, import, the sweeper) and every path that enqueues an order takes :func:`lock_pool` first and
reads the pool only after it holds the lock:

- PostgreSQL: ``pg_advisory_xact_lock`` on a 64-bit hash of (currency, network), held until the transaction
  ends. Each statement under READ COMMITTED takes a fresh snapshot, so whoever gets the lock second sees what
  the first committed: the release sees the order now queued (and hands it the wallet), or the allocation sees
  the wallet now free (and takes it).
- SQLite (embedded, one process): the database has a single writer. The "lock" is a write that matches no row,
  which makes the driver open the transaction and take SQLite's write lock, held until commit; every
  transaction that writes is serialised and reads the latest committed state.

Lock order, which keeps PostgreSQL free of deadlocks: pool lock, then allocation rows, then wallet rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import SUPPORTED, default_network
from servicekit.db import lock_until_commit
from servicekit.errors import ValidationFailedError
from wallet_pool.allocations.models import wait_queue_table


@dataclass(frozen=True, slots=True)
class Pool:
    """The wallets of one currency on one network, e.g. USDT on TRC20."""

    currency: str
    network: str

    @property
    def lock_key(self) -> int:
        """A stable signed 64-bit key for ``pg_advisory_xact_lock``."""
        digest = hashlib.blake2b(f"wallet-pool:{self.currency}:{self.network}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big", signed=True)

    def __str__(self) -> str:
        return f"{self.currency}/{self.network}"


def resolve_pool(*, currency: str, network: str | None) -> Pool:
    """The pool named by a request: currency upper-cased, network defaulted and spelled as the desk spells it.

    Raises :class:`ValidationFailedError` naming the field when the desk does not handle it."""
    code = currency.strip().upper()
    if code not in SUPPORTED:
        raise ValidationFailedError.for_field(
            "currency", f"currency {currency!r} is not supported; use one of: {', '.join(SUPPORTED)}"
        )
    if network is None or not network.strip():
        return Pool(code, default_network(code))
    for known in SUPPORTED[code]:
        if known.lower() == network.strip().lower():
            return Pool(code, known)
    raise ValidationFailedError.for_field(
        "network", f"{code} is not accepted on network {network!r}; use one of: {', '.join(SUPPORTED[code])}"
    )


def canonical_network(network: str) -> str:
    """A network name as the desk spells it (``trc20`` → ``TRC20``); unknown names are returned trimmed."""
    wanted = network.strip().lower()
    for networks in SUPPORTED.values():
        for known in networks:
            if known.lower() == wanted:
                return known
    return network.strip()


async def lock_pool(session: AsyncSession, pool: Pool) -> None:
    """Serialise this transaction with every other one that frees a wallet of ``pool`` or enqueues in it
    (on SQLite, with every other writing transaction)."""
    await lock_until_commit(session, pool.lock_key, write_lock_on=wait_queue_table)


async def try_lock_pool(session: AsyncSession, pool: Pool) -> bool:
    """Like :func:`lock_pool`, but gives up at once (``False``) when another transaction holds the pool."""
    return await lock_until_commit(session, pool.lock_key, write_lock_on=wait_queue_table, wait=False)
