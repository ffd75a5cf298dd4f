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


class CurrencyPool(BaseModel):
    currency: str = Field(max_length=10)
    total: int = Field(ge=0)
    free: int = Field(ge=0)
    reserved: int = Field(ge=0)
    disabled: int = Field(ge=0)
    queue_length: int = Field(ge=0)
    oldest_wait_seconds: float | None = Field(ge=0, allow_inf_nan=False)
    average_wait_seconds: float | None = Field(ge=0, allow_inf_nan=False)


class PoolStats(BaseModel):
    generated_at: datetime
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
