"""What order-api asks of wallet-pool: an address per order, and pool health.

wallet-pool is trusted for its job, not for anything: every allocation it answers (and every address its
``wallet.assigned`` event carries) goes through :func:`checked_allocation` before order-api acts on it. The
answer must be about the order asked for, in a known shape with bounded values, and an address must be a
valid mainnet address (format and checksum) of the order's own currency and network. Anything else is
:class:`~servicekit.errors.PeerAnswerInvalidError`, which callers treat as "no answer yet".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from coin_addresses import InvalidAddressError, UnsupportedNetworkError, validate_address
from servicekit import windows
from servicekit.client import ServiceClient
from servicekit.db import utcnow
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


QUEUE_STATS_WINDOW = timedelta(hours=24)
QUEUE_STATS_LONGEST_WINDOW = timedelta(days=31)
MAX_HOURS_IN_WINDOW = 31 * 24 + 1
"""wallet-pool's queue analytics cover at most 31 days: this many hours at most, the first one partial."""
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class QueueWaitBucket(BaseModel):
    le_seconds: Seconds | None = Field(description="Upper bound of the bucket; null beyond the last bound.")
    count: Count


class QueueWait(BaseModel):
    """The wait (queued → address) of the orders handed an address from the queue in the window."""

    handed_over: Count = Field(description="Orders handed an address from the queue in the window.")
    p50_seconds: Seconds | None = Field(description="Median wait (nearest rank).")
    p90_seconds: Seconds | None = Field(description="90th percentile of the wait (nearest rank).")
    p99_seconds: Seconds | None = Field(description="99th percentile of the wait (nearest rank).")
    histogram: list[QueueWaitBucket] = Field(
        max_length=32, description="Waits in fixed buckets, shortest first."
    )


class QueueAbandonment(BaseModel):
    """Of the orders that entered the queue in the window, how many left it without an address."""

    queued: Count = Field(description="Orders that entered the queue in the window.")
    handed_over: Count = Field(description="Of those, orders that got an address from the queue.")
    abandoned: Count = Field(description="Of those, orders cancelled or expired before an address.")
    still_waiting: Count = Field(description="Of those, orders still in the queue.")
    rate: float | None = Field(ge=0, le=1, allow_inf_nan=False, description="abandoned / queued.")


class QueueCapacity(BaseModel):
    """The fewest wallets that keep the p90 wait under the target at the window's arrival rate and holding
    time, by Erlang C (M/M/c)."""

    method: str = Field(max_length=32, description="`erlang_c`.")
    arrival_rate_per_hour: Seconds = Field(description="Orders asking for an address per hour in the window.")
    mean_holding_seconds: Seconds | None = Field(description="Mean allocation → release over the window.")
    reuse_cooldown_seconds: Count = Field(description="The rest of a released wallet before reuse.")
    offered_load: Seconds | None = Field(description="Wallets busy on average (Erlangs).")
    usable_wallets: Count = Field(description="Wallets not disabled today.")
    recommended_wallets: Count | None = Field(description="The fewest wallets with P(wait > target) <= 10 %.")
    shortfall: Count | None = Field(description="recommended_wallets - usable_wallets, at least 0.")
    p_wait_over_target: float | None = Field(
        ge=0, le=1, allow_inf_nan=False, description="P(wait > target) with today's wallets (per network)."
    )


class QueueHours(BaseModel):
    """Per hour of the window (UTC): item ``i`` is the hour starting ``first_hour`` + ``i`` hours."""

    first_hour: datetime
    arrivals: list[Count] = Field(
        max_length=MAX_HOURS_IN_WINDOW, description="Orders that entered the queue."
    )
    hand_overs: list[Count] = Field(
        max_length=MAX_HOURS_IN_WINDOW, description="Orders handed an address from the queue."
    )


class QueuePeakHours(BaseModel):
    peak_hour: int | None = Field(
        ge=0, le=23, description="The hour of the day (in `tz`) with the most arrivals."
    )
    arrivals_by_hour_of_day: list[Count] = Field(
        min_length=24, max_length=24, description="Item ``h``: arrivals from h:00 to h:59 in `tz`."
    )


class QueueFigures(BaseModel):
    """wallet-pool's queue analytics of one pool (a currency, or the currency on one network), bounded as a
    peer's answer is; staff read them through ``GET /v1/stats/queue``."""

    wait: QueueWait
    abandonment: QueueAbandonment
    capacity: QueueCapacity
    peak_hours: QueuePeakHours
    hourly: QueueHours


class NetworkQueue(QueueFigures):
    network: str = Field(max_length=16, examples=["TRC20"])


class CurrencyQueue(QueueFigures):
    currency: str = Field(max_length=10, examples=["BTC"])
    networks: list[NetworkQueue] = Field(max_length=20, description="The same figures, per network.")


class QueueStatsQuery(BaseModel):
    """What staff may ask of the queue analytics; wallet-pool checks the rest (the window's length, ``tz``)."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(
        default=None, description="Start of the window (ISO 8601 with offset)."
    )
    until: AwareDatetime | None = Field(
        default=None, description="End of the window, exclusive; default now."
    )
    days: int | None = Field(
        default=None, ge=1, le=31, description="The last this many days, instead of since."
    )
    peak_days: int = Field(default=7, ge=1, le=90, description="Days the peak hours are counted over.")
    tz: str = Field(default="UTC", max_length=64, description="IANA time zone of the peak hours.")
    target_p90_wait_seconds: int | None = Field(
        default=None, ge=1, le=86400, description="The p90 wait to plan for; default wallet-pool's setting."
    )

    def checked(self) -> QueueStatsQuery:
        """This query if wallet-pool would take it (the window, the time zone): bad input is refused here, by
        field, rather than as wallet-pool's error."""
        windows.window(
            since=self.since,
            until=self.until,
            days=self.days,
            now=utcnow(),
            default=QUEUE_STATS_WINDOW,
            longest=QUEUE_STATS_LONGEST_WINDOW,
        )
        windows.time_zone(self.tz)
        return self


class QueueStats(BaseModel):
    """Queue analytics per currency, as wallet-pool computes them."""

    generated_at: datetime
    since: datetime = Field(description="Start of the window.")
    until: datetime = Field(description="End of the window (exclusive).")
    peak_days: int = Field(ge=1, le=366, description="Days (ending now) the peak hours are counted over.")
    tz: str = Field(max_length=64, description="The time zone of the peak hours.")
    target_p90_wait_seconds: int = Field(ge=1, description="The p90 wait the capacity plan keeps under.")
    currencies: list[CurrencyQueue] = Field(max_length=100)


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

    async def queue_stats(self, query: QueueStatsQuery) -> QueueStats:
        params = query.model_dump(mode="json", exclude_none=True)
        return self.client.answer_as(QueueStats, await self.client.get_json("/v1/stats/queue", params=params))

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
