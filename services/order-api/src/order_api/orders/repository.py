"""The orders' non-trivial queries: an order read for update, a customer's page of orders, the claim of an
``Idempotency-Key``, and the counts of open orders the intake caps are checked with (``intake.OpenOrderCaps``). They only execute: the
callers decide what a missing row or a full cap means."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators.models import OrderAssignment
from order_api.orders.lifecycle import OPEN
from order_api.orders.models import IdempotencyKey, Order, OrderEvent, OrderStatus
from servicekit.db import insert_ignoring
from servicekit.pagination import Keyset

NEWEST_FIRST = Keyset("orders", Order.created_at, Order.id, newest_first=True)
"""A customer's orders as listed."""


async def find_order(session: AsyncSession, *, order_id: str, for_update: bool = False) -> Order | None:
    query = select(Order).where(Order.id == order_id)
    if for_update:  # a locked read is a fresh read, whatever this session held of the order before
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def customer_orders_page(
    session: AsyncSession, *, customer_id: str, status: OrderStatus | None, cursor: str | None, limit: int
) -> tuple[list[Order], str | None]:
    """One page of the customer's orders (of one status, if given), newest first, and the next page's cursor."""
    query = select(Order).where(Order.customer_id == customer_id)
    if status is not None:
        query = query.where(Order.status == status.value)
    rows = (await session.scalars(NEWEST_FIRST.select(query, cursor=cursor, limit=limit))).all()
    page, next_cursor = NEWEST_FIRST.cut(rows, limit=limit)
    return list(page), next_cursor


async def open_orders_by_status(session: AsyncSession) -> dict[str, int]:
    """How many orders are in each open status (off ``ix_order_status_expires_at``, which leads with the
    status)."""
    query = (
        select(Order.status, func.count())
        .where(Order.status.in_([status.value for status in OPEN]))
        .group_by(Order.status)
    )
    return {status: int(count) for status, count in (await session.execute(query)).all()}


async def holds_open_orders(session: AsyncSession, *, holder: ColumnElement[bool], limit: int) -> bool:
    """Whether the orders matching ``holder`` already hold ``limit`` open ones (reads at most ``limit`` rows)."""
    open_orders = (
        select(Order.id).where(holder, Order.status.in_([s.value for s in OPEN])).limit(limit).subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(open_orders)) or 0) >= limit


def orders_of_customer(customer_id: str, *, mailbox_proven: bool, client_ip: str) -> ColumnElement[bool]:
    """The orders a new order of this customer is counted with (``intake.OpenOrderCaps``): with a proven
    mailbox, the customer's orders placed the same way; else those placed with just the email from the same
    client network."""
    if mailbox_proven:
        return and_(Order.customer_id == customer_id, Order.mailbox_proven.is_(True))
    return and_(
        Order.customer_id == customer_id, Order.mailbox_proven.is_(False), Order.client_ip == client_ip
    )


def orders_of_network(client_ip: str) -> ColumnElement[bool]:
    """Every order placed from the client network ``client_ip``."""
    return Order.client_ip == client_ip


async def reserve_idempotency_key(
    session: AsyncSession, *, owner: str, key: str, fingerprint: str, order_id: str, now: datetime
) -> bool:
    """Write the key for order ``order_id`` unless it is written already; whether this call wrote it."""
    claimed = await session.scalar(
        insert_ignoring(
            session,
            IdempotencyKey,
            {
                "owner": owner,
                "key": key,
                "request_fingerprint": fingerprint,
                "order_id": order_id,
                "created_at": now,
            },
            conflict=["owner", "key"],
        ).returning(IdempotencyKey.id)
    )
    return claimed is not None


async def locked_idempotency_key(session: AsyncSession, *, owner: str, key: str) -> IdempotencyKey:
    """The stored key, locked until the transaction ends: one retry at a time recovers what a dead request
    left."""
    return (
        await session.execute(
            select(IdempotencyKey)
            .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
            .with_for_update()
        )
    ).scalar_one()


def nobody_on_it() -> ColumnElement[bool]:
    """SQL: the order awaits its deposit with no operator working on it: held by nobody, or auto-assigned
    and not accepted yet (its assignment to the holder still pending)."""
    pending = (
        select(OrderAssignment.id)
        .where(
            OrderAssignment.order_id == Order.id,
            OrderAssignment.operator_id == Order.operator_id,
            OrderAssignment.outcome.is_(None),
        )
        .exists()
    )
    return or_(
        and_(Order.status == OrderStatus.AWAITING_DEPOSIT.value, Order.operator_id.is_(None)),
        and_(Order.status == OrderStatus.IN_PROGRESS.value, pending),
    )


async def untouched_orders(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many orders have nobody on them (:func:`nobody_on_it`), and when the oldest of them got its
    address (off ``ix_order_status_expires_at``, which leads with the status)."""
    count, oldest = (
        await session.execute(select(func.count(), func.min(Order.address_assigned_at)).where(nobody_on_it()))
    ).one()
    return int(count), oldest


async def take_moments(session: AsyncSession, *, order_id: str) -> tuple[int, datetime | None]:
    """How many times the order was taken and when last (its history, off
    ``ix_order_event_order_id_to_status``): a take is the step from ``awaiting_deposit`` to ``in_progress``."""
    count, last = (
        await session.execute(
            select(func.count(), func.max(OrderEvent.created_at)).where(
                OrderEvent.order_id == order_id,
                OrderEvent.to_status == OrderStatus.IN_PROGRESS.value,
                OrderEvent.from_status == OrderStatus.AWAITING_DEPOSIT.value,
            )
        )
    ).one()
    return int(count), last
