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


# -- queue analytics: GET /v1/stats/queue ----------------------------------------------------------------------


class WaitBucketRead(BaseModel):
    """How many orders waited up to ``le_seconds`` (and more than the previous bucket's bound)."""

    le_seconds: float | None = Field(
        description="The bucket's upper bound; null for longer than the last bound."
    )
    count: int


class WaitDistributionRead(BaseModel):
    """How long the orders handed an address from the queue in the window had waited (queued → address)."""

    handed_over: int = Field(description="Orders handed an address from the queue in the window.")
    p50_seconds: float | None = Field(
        description="Median wait (nearest rank); null when nobody was handed over."
    )
    p90_seconds: float | None = Field(description="90th percentile of the wait (nearest rank).")
    p99_seconds: float | None = Field(description="99th percentile of the wait (nearest rank).")
    histogram: list[WaitBucketRead] = Field(description="Waits in fixed buckets (seconds), shortest first.")


class AbandonmentRead(BaseModel):
    """Of the orders that entered the queue in the window, how many left it without an address."""

    queued: int = Field(description="Orders that entered the queue in the window.")
    handed_over: int = Field(description="Of those, orders that got an address from the queue (so far).")
    abandoned: int = Field(description="Of those, orders released (cancelled or expired) before an address.")
    still_waiting: int = Field(description="Of those, orders still in the queue.")
    rate: float | None = Field(description="abandoned / queued (0..1); null when nobody was queued.")


class QueueHoursRead(BaseModel):
    """Arrivals and hand-overs per hour of the window (UTC), as arrays: item ``i`` is the hour starting
    ``first_hour`` + ``i`` hours (compact: a 31-day window is 745 hours)."""

    first_hour: datetime = Field(description="Start of the window's first hour (UTC).")
    arrivals: list[int] = Field(description="Orders that entered the queue, per hour.")
    hand_overs: list[int] = Field(description="Orders handed an address from the queue, per hour.")


class PeakHoursRead(BaseModel):
    """When orders enter the queue, by hour of the day in `tz`, over the last `peak_days` days."""

    peak_hour: int | None = Field(
        description="The hour of the day with the most arrivals (the earliest on a tie); null without arrivals."
    )
    arrivals_by_hour_of_day: list[int] = Field(
        description="24 counts: item ``h`` is the arrivals from h:00 to h:59 in `tz`, over `peak_days`."
    )


class CapacityRead(BaseModel):
    """How many wallets would keep the p90 wait under the target at the window's arrival rate and holding time
    (Erlang C, M/M/c: the wallets are the servers)."""

    method: str = Field(
        default="erlang_c", description="`erlang_c`: the M/M/c queue, P(wait > target) ≤ 10 %."
    )
    arrival_rate_per_hour: float = Field(
        description="Orders asking for an address per hour in the window (given one, or left the queue without)."
    )
    mean_holding_seconds: float | None = Field(
        description="Mean time an order held a wallet (allocation → release), over the releases in the window."
    )
    reuse_cooldown_seconds: int = Field(
        description="The rest a released wallet takes before reuse; counted in the time a wallet is busy."
    )
    offered_load: float | None = Field(
        description="Arrival rate x (mean holding time + cool-down): the wallets busy on average (Erlangs)."
    )
    usable_wallets: int = Field(description="Wallets not disabled today.")
    recommended_wallets: int | None = Field(
        description="The fewest usable wallets with P(wait > target) ≤ 10 %; null without a measured holding "
        "time (no release in the window)."
    )
    shortfall: int | None = Field(description="recommended_wallets - usable_wallets, at least 0.")
    p_wait_over_target: float | None = Field(
        description="P(wait > target) with today's usable wallets, by the same model (per network only)."
    )


class QueueFiguresRead(BaseModel):
    wait: WaitDistributionRead
    abandonment: AbandonmentRead
    capacity: CapacityRead
    peak_hours: PeakHoursRead
    hourly: QueueHoursRead


class NetworkQueueRead(QueueFiguresRead):
    """The queue of one currency on one network."""

    network: str = Field(examples=["TRC20"])


class CurrencyQueueRead(QueueFiguresRead):
    """The queue of one currency, all its networks together (capacity: the networks' sum)."""

    currency: str = Field(examples=["BTC"])
    networks: list[NetworkQueueRead] = Field(description="The same figures, per network.")


class QueueStatsRead(BaseModel):
    """Queue analytics per currency and network. Pools with no wallet and no queue activity are omitted."""

    generated_at: datetime
    since: datetime = Field(description="Start of the window.")
    until: datetime = Field(description="End of the window (exclusive).")
    peak_days: int = Field(description="Days (ending now) the peak hours are counted over.")
    tz: str = Field(description="The time zone of the hours of the day in `peak_hours`.")
    target_p90_wait_seconds: int = Field(description="The p90 wait the capacity plan keeps under.")
    currencies: list[CurrencyQueueRead]
