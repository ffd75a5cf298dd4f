"""The order statistics: the window asked for, and the report (``GET /v1/stats/orders``)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from functools import cache
from typing import Literal
from zoneinfo import available_timezones

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from servicekit.bounds import DecimalString


class Bucket(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


class OrderStatsQuery(BaseModel):
    """The window (query parameters): orders created in ``[since, until)``."""

    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime | None = Field(
        default=None, description="Inclusive, ISO 8601 with a time zone. Default: 7 days before `until`."
    )
    until: AwareDatetime | None = Field(
        default=None, description="Exclusive, with a time zone. Default: now."
    )
    tz: str = Field(
        default="UTC",
        max_length=64,
        description="IANA time zone (e.g. `Europe/Berlin`) of the buckets, hours of day and days of week.",
    )
    bucket: Bucket = Field(default=Bucket.DAY, description="The size of the buckets: `hour` or `day`.")

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _zone_names():
            raise ValueError(f"'{value}' is not an IANA time zone name (e.g. 'Europe/Berlin')")
        return value

    @field_validator("since", "until")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is not None and not EARLIEST <= value < LATEST:
            raise ValueError("must be from 1970 to 8999")
        return value


class Conversion(BaseModel):
    """Where the orders created in the window went (their status now)."""

    created: int = Field(description="Orders created in the window.")
    completed: int
    cancelled_by_customer: int
    cancelled_by_operator: int = Field(
        description="Cancelled by staff (operator, support, admin, admin key)."
    )
    cancelled_by_system: int = Field(description="Cancelled by the desk itself (e.g. a customer's erasure).")
    expired: int = Field(description="Expired unpaid: no deposit before the order's deadline.")
    open: int = Field(description="Not closed yet.")
    completion_rate: float | None = Field(description="completed / created; null without orders.")


class Percentiles(BaseModel):
    """A duration's percentiles in seconds (continuous, interpolated); null when no order has it."""

    count: int = Field(description="Orders the duration is known for.")
    p50: float | None
    p90: float | None
    p99: float | None


class Durations(BaseModel):
    time_to_address: Percentiles = Field(description="Created → deposit address assigned.")
    time_to_take: Percentiles = Field(description="Address assigned (takeable) → first taken by an operator.")
    handling_time: Percentiles = Field(
        description="Last taken → closed, for orders closed while an operator held them."
    )
    time_to_complete: Percentiles = Field(description="Created → completed.")


class Tally(BaseModel):
    orders: int = Field(description="Orders created.")
    completed: int = Field(description="Of them, completed by now.")
    amount: DecimalString = Field(description="Their amounts summed (only within one currency).")


class CurrencyTally(Tally):
    currency: str = Field(description="What the customer sends.")
    network: str


class AmountBandTally(Tally):
    currency: str
    band: str = Field(description="`lower-upper` (lower inclusive) or `lower+` for the top band.")
    lower: DecimalString
    upper: DecimalString | None = Field(description="Exclusive; null for the top band.")


class CountTally(BaseModel):
    orders: int
    completed: int


class HourTally(CountTally):
    hour: int = Field(ge=0, le=23, description="Hour of day in `tz`.")


class WeekdayTally(CountTally):
    day: int = Field(ge=1, le=7, description="ISO day of week in `tz`: 1 Monday … 7 Sunday.")
    name: str


class BucketTally(CountTally):
    start: datetime = Field(description="The bucket's start in `tz`.")


class PaymentCounts(BaseModel):
    orders: int = Field(description="Completed orders whose completion recorded the payment.")
    exact: int = Field(description="The deposit was the ordered amount.")
    underpaid: int = Field(description="Less arrived; completed with an adjusted payout.")
    overpaid: int = Field(description="More arrived; completed with an adjusted payout.")


class PaymentCurrencyTally(PaymentCounts):
    currency: str = Field(description="What the customer sends.")
    ordered: DecimalString = Field(description="The orders' amounts summed.")
    received: DecimalString = Field(description="The deposits recorded, summed.")
    difference: DecimalString = Field(description="received minus ordered (negative: less arrived).")


class PaymentStats(PaymentCounts):
    """Received versus ordered, for the window's completed orders with a transaction record (those completed
    without one, where the desk allows it, are not counted)."""

    by_currency: list[PaymentCurrencyTally] = Field(description="Per currency sent, by currency.")


class OrderStatsRead(BaseModel):
    """The orders created in the window, counted by creation time; outcomes and durations are as of now."""

    since: datetime
    until: datetime
    tz: str
    bucket: Bucket
    scope: Literal["desk", "operator"] = Field(
        description="`desk`: every order (admin, support); `operator`: the orders the caller took or holds."
    )
    operator_id: str | None = Field(description="Whose slice, for scope `operator`.")
    by_status: dict[str, int] = Field(description="Orders per status now (every status, zeros included).")
    conversion: Conversion
    durations: Durations
    by_currency: list[CurrencyTally]
    by_band: list[AmountBandTally] = Field(
        description="Per currency and amount band (bands set by `ORDER_API_STATS_AMOUNT_BANDS`); only bands with orders."
    )
    by_hour_of_day: list[HourTally] = Field(description="24 entries, 0 to 23.")
    by_day_of_week: list[WeekdayTally] = Field(description="7 entries, Monday first.")
    buckets: list[BucketTally] = Field(description="Every bucket of the window, empty ones included.")
    payments: PaymentStats = Field(description="Received versus ordered (the transaction records).")
