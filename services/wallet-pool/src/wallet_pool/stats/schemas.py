from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class CurrencyPoolRead(BaseModel):
    """The pool of one currency."""

    currency: str = Field(examples=["BTC"])
    total: int
    free: int
    reserved: int
    disabled: int
    queue_length: int = Field(description="Orders waiting for an address of this currency.")
    oldest_wait_seconds: float | None = Field(description="How long the head of the queue has waited.")
    average_wait_seconds: float | None


class PoolStatsRead(BaseModel):
    """Pool health per currency. Currencies with no wallets and no queue are omitted."""

    generated_at: datetime
    currencies: list[CurrencyPoolRead]
