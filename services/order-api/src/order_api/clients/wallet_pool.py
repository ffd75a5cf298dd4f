"""What order-api asks of wallet-pool."""

from __future__ import annotations

from datetime import datetime

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


class WalletPoolClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def pool_stats(self) -> PoolStats:
        return PoolStats.model_validate(await self.client.get_json("/v1/stats"))
