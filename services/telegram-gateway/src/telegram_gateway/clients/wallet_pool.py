"""wallet-pool's pool health (``GET /v1/stats``, scope ``pool:read``), for ``/pool``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from servicekit.client import ServiceClient


class NetworkPool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    network: str
    total: int
    free: int
    queue_length: int
    oldest_wait_seconds: float | None = None


class CurrencyPool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    currency: str
    total: int
    free: int
    reserved: int
    disabled: int
    queue_length: int
    oldest_wait_seconds: float | None = None
    free_exhausted_in_seconds: float | None = None
    networks: list[NetworkPool] = Field(default_factory=list)


class PoolStats(BaseModel):
    model_config = ConfigDict(extra="ignore")

    currencies: list[CurrencyPool]


class WalletPoolClient:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def pool_stats(self) -> PoolStats:
        return PoolStats.model_validate(await self.client.get_json("/v1/stats"))
