from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class NetworkPoolRead(BaseModel):
    """The pool of one currency on one network."""

    network: str = Field(examples=["TRC20"])
    total: int
    free: int
    reserved: int
    disabled: int
    queue_length: int = Field(description="Orders waiting for an address of this pool.")
    oldest_wait_seconds: float | None = Field(description="How long the longest-waiting order has waited.")
    average_wait_seconds: float | None = Field(
        description="Average time the waiting orders have waited so far."
    )
    allocations_in_window: int = Field(description="Addresses handed to orders in the last `window_seconds`.")
    releases_in_window: int = Field(description="Addresses given back in the last `window_seconds`.")
    free_exhausted_in_seconds: float | None = Field(
        description="When free wallets run out at the window's net allocation rate; null when not draining."
    )


class CurrencyPoolRead(BaseModel):
    """The pool of one currency (all its networks together)."""

    currency: str = Field(examples=["BTC"])
    total: int
    free: int
    reserved: int
    disabled: int
    queue_length: int = Field(description="Orders waiting for an address of this currency.")
    oldest_wait_seconds: float | None = Field(description="How long the longest-waiting order has waited.")
    average_wait_seconds: float | None = Field(
        description="Average time the waiting orders have waited so far."
    )
    allocations_in_window: int = Field(
        default=0, description="Addresses handed to orders in the last `window_seconds`."
    )
    releases_in_window: int = Field(
        default=0, description="Addresses given back in the last `window_seconds`."
    )
    free_exhausted_in_seconds: float | None = Field(
        default=None,
        description="When free wallets run out at the window's net allocation rate; null when not draining.",
    )
    networks: list[NetworkPoolRead] = Field(default_factory=list, description="The same, per network.")


class PoolStatsRead(BaseModel):
    """Pool health per currency. Currencies with no wallets and no queue are omitted."""

    generated_at: datetime
    window_seconds: int = Field(default=3600, description="The recent window the rates are measured over.")
    currencies: list[CurrencyPoolRead]
