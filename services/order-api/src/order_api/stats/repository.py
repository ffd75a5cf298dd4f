"""The order statistics' queries: orders created in a window, grouped in SQL.

Every query starts from ``ix_order_created_at_id`` (the window) and reads an order's history one order at a
time through ``ix_order_event_order_id_to_status``, so its cost follows the orders in the window, never the
size of the tables. PostgreSQL does all the arithmetic (``percentile_cont``, local hours with ``timezone()``);
the embedded SQLite has neither, so there the durations come back as timestamps and the groups as 15-minute
UTC slots (every time zone's offset is a multiple of 15 minutes) for the service to finish: the embedded mode
holds a desk's demo data, not a million orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, Float, Integer, Row, and_, case, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from order_api.orders.models import Order, OrderEvent, OrderStatus

DURATIONS = ("time_to_address", "time_to_take", "handling_time", "time_to_complete")
PERCENTILES = (0.5, 0.9, 0.99)
_TAKEN = OrderStatus.IN_PROGRESS.value
_CLOSED_BY_OPERATORS = (OrderStatus.COMPLETED.value, OrderStatus.CANCELLED.value)


def _taken_at(aggregate: Any) -> ColumnElement[Any]:
    """SQL: when the order was first (``func.min``) or last (``func.max``) taken; null when never. A take is
    the step from ``awaiting_deposit`` to ``in_progress``: escalation steps and reassignments of a held order
    are recorded ``in_progress`` to ``in_progress`` and do not count."""
    return (
        select(aggregate(OrderEvent.created_at))
        .where(
            OrderEvent.order_id == Order.id,
            OrderEvent.to_status == _TAKEN,
            OrderEvent.from_status == OrderStatus.AWAITING_DEPOSIT.value,
        )
        .scalar_subquery()
    )


def _outcome() -> ColumnElement[str]:
    """SQL: where the order went: its status, and for a cancellation who made it (the history's actor)."""
    by_whom = (
        select(
            case(
                (OrderEvent.actor.like("customer:%"), literal("cancelled_by_customer")),
                (OrderEvent.actor.like("system:%"), literal("cancelled_by_system")),
                else_=literal("cancelled_by_operator"),
            )
        )
        .where(OrderEvent.order_id == Order.id, OrderEvent.to_status == OrderStatus.CANCELLED.value)
        .order_by(OrderEvent.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return case(
        (Order.status == OrderStatus.COMPLETED.value, literal("completed")),
        (Order.status == OrderStatus.EXPIRED.value, literal("expired")),
        # Every status change writes its history; a cancellation without one counts as staff's.
        (Order.status == OrderStatus.CANCELLED.value, func.coalesce(by_whom, "cancelled_by_operator")),
        else_=literal("open"),
    )


def _amount_band(bands: Mapping[str, Sequence[Decimal]]) -> ColumnElement[int]:
    """SQL: the index of the order's amount band in its currency's ``bands`` (0 when none are set)."""
    per_currency = [
        (
            Order.from_currency == currency,
            case(
                *((Order.amount < boundary, literal(index)) for index, boundary in enumerate(boundaries)),
                else_=literal(len(boundaries)),
            ),
        )
        for currency, boundaries in bands.items()
        if boundaries
    ]
    if not per_currency:
        return literal(0)
    return case(*per_currency, else_=literal(0))


def _slot(dialect: str, tz: str) -> ColumnElement[Any]:
    """SQL: the hour the order was created in, local to ``tz`` (PostgreSQL); the 15-minute UTC slot as text
    ``YYYY-MM-DD HH:MM`` (SQLite, turned local by the service)."""
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone(tz, Order.created_at))
    minute = cast(func.strftime("%M", Order.created_at), Integer)
    return func.strftime("%Y-%m-%d %H:", Order.created_at).concat(func.printf("%02d", minute - minute % 15))


def _in_window(*, since: datetime, until: datetime, taken_by: str | None) -> list[ColumnElement[bool]]:
    """SQL: created in ``[since, until)`` and, for an operator's slice, taken by them at least once or handed
    to them by a reassignment (support's step, recorded as in progress to in progress with the new holder in
    its details): their history with the order, whoever holds it now. Both off
    ``ix_order_event_order_id_to_status``."""
    where: list[ColumnElement[bool]] = [Order.created_at >= since, Order.created_at < until]
    if taken_by is not None:
        took = OrderEvent.actor == f"operator:{taken_by}"
        handed = and_(
            OrderEvent.from_status == _TAKEN, OrderEvent.details["operator_id"].as_string() == taken_by
        )
        theirs = (
            select(OrderEvent.id)
            .where(OrderEvent.order_id == Order.id, OrderEvent.to_status == _TAKEN, or_(took, handed))
            .exists()
        )
        where.append(theirs)
    return where


async def order_groups(
    session: AsyncSession,
    *,
    since: datetime,
    until: datetime,
    taken_by: str | None,
    tz: str,
    bands: Mapping[str, Sequence[Decimal]],
) -> Sequence[Row[Any]]:
    """Rows ``(currency, network, status, outcome, band, slot, orders, amount)``: the window's orders grouped
    by everything the report breaks them down by (``slot`` as :func:`_slot` makes it)."""
    dialect = session.get_bind().dialect.name
    columns = (
        Order.from_currency.label("currency"),
        Order.from_network.label("network"),
        Order.status.label("status"),
        _outcome().label("outcome"),
        _amount_band(bands).label("band"),
        _slot(dialect, tz).label("slot"),
    )
    facts = (
        select(*columns, Order.amount.label("amount"))
        .where(*_in_window(since=since, until=until, taken_by=taken_by))
        .subquery("facts")
    )
    keys = [facts.c[column.name] for column in columns]
    return (
        await session.execute(
            select(*keys, func.count().label("orders"), func.sum(facts.c.amount).label("amount")).group_by(
                *keys
            )
        )
    ).all()


def _durations() -> dict[str, tuple[Any, Any]]:
    """Each duration's ``(start, end)`` in SQL; either is null where the order has no such duration."""
    completed_at = case((Order.status == OrderStatus.COMPLETED.value, Order.closed_at))
    closed_while_held = case(
        (
            and_(Order.status.in_(_CLOSED_BY_OPERATORS), Order.operator_id.is_not(None)),
            Order.closed_at,
        )
    )
    return {
        "time_to_address": (Order.created_at, Order.address_assigned_at),
        "time_to_take": (Order.address_assigned_at, _taken_at(func.min)),
        "handling_time": (_taken_at(func.max), closed_while_held),
        "time_to_complete": (Order.created_at, completed_at),
    }


async def duration_percentiles(
    session: AsyncSession, *, since: datetime, until: datetime, taken_by: str | None
) -> dict[str, tuple[int, list[float] | None]]:
    """PostgreSQL: per duration, how many orders have it and its :data:`PERCENTILES` in seconds."""
    columns: list[ColumnElement[Any]] = []
    for start, end in _durations().values():
        seconds = cast(func.extract("epoch", end - start), Float)
        columns.append(func.count(seconds))
        columns.append(
            func.percentile_cont(literal(list(PERCENTILES), ARRAY(Float)))
            .within_group(seconds)
            .cast(ARRAY(Float))
        )
    row = (
        await session.execute(
            select(*columns).where(*_in_window(since=since, until=until, taken_by=taken_by))
        )
    ).one()
    return {
        name: (int(row[2 * i]), [float(v) for v in row[2 * i + 1]] if row[2 * i + 1] else None)
        for i, name in enumerate(DURATIONS)
    }


async def duration_moments(
    session: AsyncSession, *, since: datetime, until: datetime, taken_by: str | None
) -> Sequence[Row[Any]]:
    """SQLite: per order, each duration's ``(start, end)`` timestamps in :data:`DURATIONS` order."""
    columns = [moment for pair in _durations().values() for moment in pair]
    return (
        await session.execute(
            select(*columns).where(*_in_window(since=since, until=until, taken_by=taken_by))
        )
    ).all()


def _paid_in_window(*, since: datetime, until: datetime, taken_by: str | None) -> list[ColumnElement[bool]]:
    """SQL: the window's completed orders whose completion recorded the payment (``orders.transactions``)."""
    return [
        *_in_window(since=since, until=until, taken_by=taken_by),
        Order.status == OrderStatus.COMPLETED.value,
        Order.payment_outcome.is_not(None),
        Order.deposit_amount.is_not(None),
    ]


async def payment_groups(
    session: AsyncSession, *, since: datetime, until: datetime, taken_by: str | None
) -> list[tuple[str, str, int, Decimal, Decimal]]:
    """Rows ``(currency, payment, orders, ordered, received)``: the window's completed orders with a record,
    per currency and outcome, their ordered and received amounts summed. PostgreSQL sums ``NUMERIC`` exactly;
    the embedded SQLite stores amounts as text, so there the orders come back one by one and are summed here."""
    where = _paid_in_window(since=since, until=until, taken_by=taken_by)
    keys = (Order.from_currency, Order.payment_outcome)
    if session.get_bind().dialect.name == "postgresql":
        rows = await session.execute(
            select(*keys, func.count(), func.sum(Order.amount), func.sum(Order.deposit_amount))
            .where(*where)
            .group_by(*keys)
        )
        return [(c, p, int(n), Decimal(ordered), Decimal(received)) for c, p, n, ordered, received in rows]
    sums: dict[tuple[str, str], list[Any]] = {}
    for currency, payment, amount, received in await session.execute(
        select(*keys, Order.amount, Order.deposit_amount).where(*where)
    ):
        tally = sums.setdefault((currency, payment), [0, Decimal(0), Decimal(0)])
        tally[0] += 1
        tally[1] += amount
        tally[2] += received
    return [(c, p, n, ordered, received) for (c, p), (n, ordered, received) in sums.items()]
