"""What order-api asks of wallet-pool: an address per order, and pool health.

wallet-pool is trusted for its job, not for anything: every allocation it answers (and every address its
``wallet.assigned`` event carries) goes through :func:`checked_allocation` before order-api acts on it. The
answer must be about the order asked for, in a known shape with bounded values, and an address must be a
valid mainnet address (format and checksum) of the order's own currency and network. Anything else is
:class:`~servicekit.errors.PeerAnswerInvalidError`, which callers treat as "no answer yet".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from coin_addresses import InvalidAddressError, UnsupportedNetworkError, validate_address
from servicekit.client import ServiceClient
from servicekit.errors import PeerAnswerInvalidError

WALLET_POOL = "wallet-pool"
MAX_QUEUE_POSITION = 1_000_000
MAX_WAIT_SECONDS = 366 * 24 * 3600
"""Bounds of a queue place wallet-pool may report; beyond them the answer is not believed (and would not fit
the order's integer columns)."""


class PoolFigures(BaseModel):
    """What wallet-pool counts of one pool (a currency, or the currency on one network), bounded as a peer's
    answer is; staff read it through ``GET /v1/stats/pool``."""

    total: int = Field(ge=0, description="Deposit addresses in the pool.")
    free: int = Field(ge=0, description="Addresses waiting for an order.")
    reserved: int = Field(ge=0, description="Addresses held by open orders.")
    disabled: int = Field(ge=0, description="Addresses taken out of use.")
    queue_length: int = Field(ge=0, description="Orders waiting for an address of this pool.")
    oldest_wait_seconds: float | None = Field(
        ge=0, allow_inf_nan=False, description="How long the longest-waiting order has waited."
    )
    average_wait_seconds: float | None = Field(
        ge=0, allow_inf_nan=False, description="Average time the waiting orders have waited so far."
    )
    allocations_in_window: int = Field(
        default=0, ge=0, description="Addresses handed to orders in the last `window_seconds`."
    )
    releases_in_window: int = Field(
        default=0, ge=0, description="Addresses given back in the last `window_seconds`."
    )
    free_exhausted_in_seconds: float | None = Field(
        default=None,
        ge=0,
        allow_inf_nan=False,
        description="When the free addresses run out at the window's net allocation rate; null when the pool "
        "is not draining.",
    )


class NetworkPool(PoolFigures):
    network: str = Field(max_length=16, examples=["TRC20"])


class CurrencyPool(PoolFigures):
    currency: str = Field(max_length=10, examples=["BTC"])
    networks: list[NetworkPool] = Field(
        default_factory=list, max_length=20, description="The same figures, per network."
    )


class PoolStats(BaseModel):
    """Pool health per currency, as wallet-pool computes it (currencies with no address and no queue are
    left out)."""

    generated_at: datetime
    window_seconds: int = Field(
        default=3600, ge=0, description="The recent window the allocation and release rates cover."
    )
    currencies: list[CurrencyPool] = Field(max_length=100)


class Allocation(BaseModel):
    """wallet-pool's answer for one order: an address, a place in the queue, or released. Fields order-api
    does not use are ignored; the ones it uses are bounded."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: str = Field(max_length=64)
    status: Literal["allocated", "queued", "released"]
    currency: str | None = Field(default=None, max_length=10)
    network: str | None = Field(default=None, max_length=16)
    address: str | None = Field(default=None, max_length=128)
    position: int | None = Field(default=None, ge=1, le=MAX_QUEUE_POSITION)
    estimated_wait_seconds: float | None = Field(default=None, ge=0, le=MAX_WAIT_SECONDS, allow_inf_nan=False)


def checked_allocation(
    answer: Allocation, *, order_id: str, currency: str, network: str, peer: str = WALLET_POOL
) -> Allocation:
    """``answer`` if order-api may act on it for order ``order_id`` (deposited in ``currency`` on
    ``network``), with its address in the stored (normalised) form; else ``PeerAnswerInvalidError``.

    An answer about another order, or an address for another currency or network, or one that is not a valid
    mainnet address with a good checksum, is refused: an ``allocated`` answer without an address too.
    """

    def refused(reason: str) -> PeerAnswerInvalidError:
        return PeerAnswerInvalidError.of(peer, reason, order_id=order_id)

    if answer.order_id != order_id:
        raise refused("it is about another order")
    if answer.status != "allocated":
        return answer
    if (answer.currency, answer.network) != (currency, network):
        raise refused(f"an address for {answer.currency}/{answer.network}, not {currency}/{network}")
    if not answer.address:
        raise refused("allocated without an address")
    try:
        address = validate_address(currency=currency, network=network, address=answer.address)
    except (InvalidAddressError, UnsupportedNetworkError) as exc:
        raise refused(f"not a {currency} address on {network}: {exc}") from exc
    return answer if address == answer.address else answer.model_copy(update={"address": address})


class WalletPoolClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def pool_stats(self) -> PoolStats:
        return self.client.answer_as(PoolStats, await self.client.get_json("/v1/stats"))

    async def allocate(self, *, order_id: str, currency: str, network: str, priority: str) -> Allocation:
        """Ask for a deposit address; idempotent per order, so it is safe to retry. The answer is checked
        (:func:`checked_allocation`)."""
        body = {"order_id": order_id, "currency": currency, "network": network, "priority": priority}
        answer = await self.client.post_json("/v1/allocations", body, idempotent=True)
        return self._checked(answer, order_id=order_id, currency=currency, network=network)

    async def allocation(self, *, order_id: str, currency: str, network: str) -> Allocation:
        """The order's allocation as wallet-pool has it now, checked like :meth:`allocate`'s."""
        answer = await self.client.get_json(f"/v1/allocations/{order_id}")
        return self._checked(answer, order_id=order_id, currency=currency, network=network)

    def _checked(self, answer: Any, *, order_id: str, currency: str, network: str) -> Allocation:
        allocation = self.client.answer_as(Allocation, answer)
        return checked_allocation(
            allocation, order_id=order_id, currency=currency, network=network, peer=self.client.peer
        )
