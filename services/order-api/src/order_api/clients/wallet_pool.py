"""What order-api asks of wallet-pool: an address per order, and pool health."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from servicekit.client import ServiceClient


class CurrencyPool(BaseModel):
    currency: str
    total: int
    free: int
    reserved: int
    disabled: int
    queue_length: int
    oldest_wait_seconds: float | None
    average_wait_seconds: float | None


class PoolStats(BaseModel):
    generated_at: datetime
    currencies: list[CurrencyPool]


class Allocation(BaseModel):
    """wallet-pool's answer for one order: an address, a place in the queue, or released."""

    order_id: str
    status: Literal["allocated", "queued", "released"]
    currency: str | None = None
    network: str | None = None
    address: str | None = None
    position: int | None = None
    estimated_wait_seconds: float | None = None


class WalletPoolClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def pool_stats(self) -> PoolStats:
        return PoolStats.model_validate(await self.client.get_json("/v1/stats"))

    async def allocate(self, *, order_id: str, currency: str, network: str, priority: str) -> Allocation:
        """Ask for a deposit address; idempotent per order, so it is safe to retry."""
        body = {"order_id": order_id, "currency": currency, "network": network, "priority": priority}
        return Allocation.model_validate(
            await self.client.post_json("/v1/allocations", body, idempotent=True)
        )

    async def allocation(self, *, order_id: str) -> Allocation:
        return Allocation.model_validate(await self.client.get_json(f"/v1/allocations/{order_id}"))
