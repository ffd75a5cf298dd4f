"""Order statistics (seed 11.1 and 11.2): what became of the orders created in a window, how long each step took,
and where the orders came from: currency, amount, hour of day, day of week.

Orders are counted in the window they were **created** in (a cohort), with their outcome as of now, so the
conversion of a window adds up: created = completed + cancelled (by whom) + expired + open. An operator sees
the slice of orders they took at least once (their ``operator:<id>`` take in the order's history) or hold now
(handed to them by a reassignment), which stays theirs after they give it back, finish it or leave it to
expire; support, admins and the admin key see the whole desk.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators.models import OperatorRole
from order_api.operators.service import OperatorPrincipal
from order_api.orders.models import OrderStatus, PaymentOutcome
from order_api.settings import Settings
from order_api.stats import repository
from order_api.stats.schemas import (
    AmountBandTally,
    Bucket,
    BucketTally,
    Conversion,
    CurrencyTally,
    Durations,
    HourTally,
    OrderStatsQuery,
    OrderStatsRead,
    PaymentCurrencyTally,
    PaymentStats,
    Percentiles,
    WeekdayTally,
)
from servicekit.bounds import plain_decimal
from servicekit.db import strip_trailing_zeros, utcnow
from servicekit.errors import ValidationFailedError

DEFAULT_WINDOW = timedelta(days=7)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
PAYMENT_OUTCOMES = tuple(outcome.value for outcome in PaymentOutcome)
OUTCOMES = (
    "completed",
    "cancelled_by_customer",
    "cancelled_by_operator",
    "cancelled_by_system",
    "expired",
    "open",
)


def percentile_cont(values: Sequence[float], fraction: float) -> float:
    """The continuous percentile PostgreSQL's ``percentile_cont`` computes (linear between ranks)."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _percentiles(count: int, values: Sequence[float] | None) -> Percentiles:
    if not count or not values:
        return Percentiles(count=count, p50=None, p90=None, p99=None)
    p50, p90, p99 = (round(value, 3) for value in values)
    return Percentiles(count=count, p50=p50, p90=p90, p99=p99)


def _window(query: OrderStatsQuery, *, max_days: int) -> tuple[datetime, datetime]:
    until = (query.until or utcnow()).astimezone(UTC)
    since = (query.since or until - DEFAULT_WINDOW).astimezone(UTC)
    if since >= until:
        raise ValidationFailedError.for_field("since", "must be before until")
    if until - since > timedelta(days=max_days):
        raise ValidationFailedError.for_field(
            "since", f"the window is at most {max_days} days (ORDER_API_STATS_MAX_WINDOW_DAYS)"
        )
    return since, until


def _local_hour(slot: Any, zone: ZoneInfo) -> datetime:
    """The naive local hour a group's slot falls in: PostgreSQL gives it, SQLite's UTC quarter is converted."""
    if isinstance(slot, datetime):
        return slot.replace(tzinfo=None)
    utc_slot = datetime.strptime(str(slot), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    return utc_slot.astimezone(zone).replace(tzinfo=None, minute=0)


def _bucket_starts(since: datetime, until: datetime, *, zone: ZoneInfo, bucket: Bucket) -> list[datetime]:
    """Every bucket's naive local start from the one holding ``since`` to the one holding ``until``'s last
    instant, counted in wall-clock time (a day is a calendar day in ``tz``, 23 or 25 hours across DST)."""
    first = since.astimezone(zone).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    last = (until - timedelta(microseconds=1)).astimezone(zone).replace(tzinfo=None)
    step = timedelta(hours=1)
    if bucket == Bucket.DAY:
        first, step = first.replace(hour=0), timedelta(days=1)
    starts = []
    while first <= last:
        starts.append(first)
        first += step
    return starts


def _bucket_of(hour: datetime, bucket: Bucket) -> datetime:
    return hour.replace(hour=0) if bucket == Bucket.DAY else hour


def _band_bounds(boundaries: Sequence[Decimal], index: int) -> tuple[Decimal, Decimal | None, str]:
    lower = boundaries[index - 1] if index > 0 else Decimal(0)
    upper = boundaries[index] if index < len(boundaries) else None
    label = f"{lower}-{upper}" if upper is not None else f"{lower}+"
    return lower, upper, label


async def _durations(
    session: AsyncSession, *, since: datetime, until: datetime, taken_by: str | None
) -> Durations:
    if session.get_bind().dialect.name == "postgresql":
        figures = await repository.duration_percentiles(session, since=since, until=until, taken_by=taken_by)
        return Durations(**{name: _percentiles(*figures[name]) for name in repository.DURATIONS})
    samples: dict[str, list[float]] = {name: [] for name in repository.DURATIONS}
    for row in await repository.duration_moments(session, since=since, until=until, taken_by=taken_by):
        for i, name in enumerate(repository.DURATIONS):
            start, end = row[2 * i], row[2 * i + 1]
            if start is not None and end is not None:
                samples[name].append((_aware(end) - _aware(start)).total_seconds())
    return Durations(
        **{
            name: _percentiles(
                len(values), [percentile_cont(values, f) for f in repository.PERCENTILES] if values else None
            )
            for name, values in samples.items()
        }
    )


def _aware(moment: Any) -> datetime:
    """A timestamp a SQLite expression answered (text, naive UTC) or a column answered (aware)."""
    value = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def order_stats(
    *, session: AsyncSession, settings: Settings, principal: OperatorPrincipal, query: OrderStatsQuery
) -> OrderStatsRead:
    """The report on the orders created in the query's window: the whole desk for support and admins, the
    orders they took for an operator."""
    since, until = _window(query, max_days=settings.stats_max_window_days)
    zone = ZoneInfo(query.tz)
    taken_by = principal.operator_id if principal.role == OperatorRole.OPERATOR.value else None
    bands = settings.stats_amount_bands
    rows = await repository.order_groups(
        session, since=since, until=until, taken_by=taken_by, tz=query.tz, bands=bands
    )

    by_status = dict.fromkeys((status.value for status in OrderStatus), 0)
    outcomes = dict.fromkeys(OUTCOMES, 0)
    currencies: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    amount_bands: dict[tuple[str, int], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    hours: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    weekdays: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    buckets: dict[datetime, list[int]] = defaultdict(lambda: [0, 0])
    for currency, network, status, outcome, band, slot, orders, amount in rows:
        completed = orders if status == OrderStatus.COMPLETED else 0
        by_status[status] = by_status.get(status, 0) + orders
        outcomes[outcome] += orders
        hour = _local_hour(slot, zone)
        for tally in (currencies[(currency, network)], amount_bands[(currency, int(band))]):
            tally[0] += orders
            tally[1] += completed
            tally[2] += Decimal(amount or 0)
        for counts in (
            hours[hour.hour],
            weekdays[hour.isoweekday()],
            buckets[_bucket_of(hour, query.bucket)],
        ):
            counts[0] += orders
            counts[1] += completed

    created = sum(outcomes.values())
    durations = await _durations(session, since=since, until=until, taken_by=taken_by)
    payments = await _payments(session, since=since, until=until, taken_by=taken_by)
    return OrderStatsRead(
        since=since,
        until=until,
        tz=query.tz,
        bucket=query.bucket,
        scope="operator" if taken_by is not None else "desk",
        operator_id=taken_by,
        by_status=by_status,
        conversion=Conversion(
            created=created,
            **outcomes,
            completion_rate=round(outcomes["completed"] / created, 4) if created else None,
        ),
        durations=durations,
        by_currency=[
            CurrencyTally(currency=currency, network=network, orders=n, completed=done, amount=total)
            for (currency, network), (n, done, total) in sorted(currencies.items())
        ],
        by_band=[
            AmountBandTally(
                currency=currency,
                band=label,
                lower=lower,
                upper=upper,
                orders=n,
                completed=done,
                amount=total,
            )
            for (currency, index), (n, done, total) in sorted(amount_bands.items())
            for lower, upper, label in [_band_bounds(bands.get(currency, []), index)]
        ],
        by_hour_of_day=[HourTally(hour=h, orders=hours[h][0], completed=hours[h][1]) for h in range(24)],
        by_day_of_week=[
            WeekdayTally(day=d, name=WEEKDAYS[d - 1], orders=weekdays[d][0], completed=weekdays[d][1])
            for d in range(1, 8)
        ],
        buckets=[
            BucketTally(
                start=start.replace(tzinfo=zone), orders=buckets[start][0], completed=buckets[start][1]
            )
            for start in _bucket_starts(since, until, zone=zone, bucket=query.bucket)
        ],
        payments=payments,
    )


async def _payments(
    session: AsyncSession, *, since: datetime, until: datetime, taken_by: str | None
) -> PaymentStats:
    """Received versus ordered: counts by outcome, and per currency the sums of ordered and received."""
    totals = dict.fromkeys(PAYMENT_OUTCOMES, 0)
    currencies: dict[str, dict[str, Any]] = {}
    for currency, payment, orders, ordered, received in await repository.payment_groups(
        session, since=since, until=until, taken_by=taken_by
    ):
        totals[payment] += orders
        tally = currencies.setdefault(
            currency, {**dict.fromkeys(PAYMENT_OUTCOMES, 0), "ordered": Decimal(0), "received": Decimal(0)}
        )
        tally[payment] += orders
        tally["ordered"] += ordered
        tally["received"] += received
    return PaymentStats(
        orders=sum(totals.values()),
        **totals,
        by_currency=[
            PaymentCurrencyTally(
                currency=currency,
                orders=sum(tally[name] for name in PAYMENT_OUTCOMES),
                exact=tally["exact"],
                underpaid=tally["underpaid"],
                overpaid=tally["overpaid"],
                ordered=strip_trailing_zeros(tally["ordered"]),
                received=strip_trailing_zeros(tally["received"]),
                difference=strip_trailing_zeros(tally["received"] - tally["ordered"]),
            )
            for currency, tally in sorted(currencies.items())
        ],
    )


def _csv_rows(stats: OrderStatsRead) -> Iterator[tuple[str, str, str, Any]]:
    """The report as ``(section, key, metric, value)``: one figure a line, for a spreadsheet's pivot table."""
    yield from (
        ("window", "", name, value)
        for name, value in (
            ("since", stats.since.isoformat()),
            ("until", stats.until.isoformat()),
            ("tz", stats.tz),
            ("bucket", stats.bucket.value),
            ("scope", stats.scope),
            ("operator_id", stats.operator_id or ""),
        )
    )
    yield from (("by_status", status, "orders", n) for status, n in stats.by_status.items())
    yield from (("conversion", "", metric, value) for metric, value in stats.conversion.model_dump().items())
    for name, figures in stats.durations.model_dump().items():
        yield from ((("durations", name, metric, value) for metric, value in figures.items()))
    sections: Mapping[str, Sequence[tuple[str, Mapping[str, Any]]]] = {
        "by_currency": [
            (f"{t.currency}/{t.network}", t.model_dump(include={"orders", "completed", "amount"}))
            for t in stats.by_currency
        ],
        "by_band": [
            (f"{t.currency} {t.band}", t.model_dump(include={"orders", "completed", "amount"}))
            for t in stats.by_band
        ],
        "by_hour_of_day": [
            (str(t.hour), t.model_dump(include={"orders", "completed"})) for t in stats.by_hour_of_day
        ],
        "by_day_of_week": [
            (t.name, t.model_dump(include={"orders", "completed"})) for t in stats.by_day_of_week
        ],
        "buckets": [
            (t.start.isoformat(), t.model_dump(include={"orders", "completed"})) for t in stats.buckets
        ],
        "payments": [("", stats.payments.model_dump(exclude={"by_currency"}))],
        "payments_by_currency": [
            (t.currency, t.model_dump(exclude={"currency"})) for t in stats.payments.by_currency
        ],
    }
    for section, entries in sections.items():
        for key, figures in entries:
            yield from ((section, key, metric, value) for metric, value in figures.items())


def order_stats_csv(stats: OrderStatsRead) -> str:
    """The report in long CSV (``section,key,metric,value``); an unknown figure (null) is an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "key", "metric", "value"))
    for section, key, metric, value in _csv_rows(stats):
        cell = "" if value is None else plain_decimal(value) if isinstance(value, Decimal) else str(value)
        writer.writerow((section, key, metric, cell))
    return out.getvalue()
