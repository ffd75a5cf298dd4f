"""The customers' queries: finding one by blind index, the race-safe inserts and upserts that create one, and
the bulk statements of an erasure. Repositories only execute; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.models import CustomerSession, EmailCode
from order_api.customers.models import Customer
from order_api.db import outbox
from order_api.orders.models import IdempotencyKey, Order, OrderEvent
from order_api.orders.transactions import HASHES as TRANSACTION_HASHES
from servicekit.db import try_insert, upsert


async def customer_by_email_index(session: AsyncSession, *, email_index: str) -> Customer | None:
    customer: Customer | None = await session.scalar(
        select(Customer).where(Customer.email_index == email_index)
    )
    return customer


async def insert_customer_unless_known(session: AsyncSession, *, values: Mapping[str, Any]) -> None:
    """``INSERT … ON CONFLICT DO NOTHING`` on the unique blind index: of two first orders with one email the
    loser's insert waits for the winner's commit and does nothing."""
    await try_insert(session, Customer, values, conflict=[Customer.email_index])


async def upsert_locked_customer(session: AsyncSession, *, values: Mapping[str, Any]) -> Customer:
    """The customer with ``values["email_index"]``, inserted from ``values`` when new, row-locked until the
    transaction ends: one round trip, an upsert whose conflict branch rewrites nothing but takes the lock."""
    statement = upsert(
        session,
        Customer,
        values,
        conflict=[Customer.email_index],
        update={"email_index": values["email_index"]},  # the value it has: a rewrite that only takes the lock
    ).returning(Customer)
    customer: Customer = (
        await session.scalars(statement, execution_options={"populate_existing": True})
    ).one()
    return customer


# -- erasure ------------------------------------------------------------------------------------------------


async def customer_for_update(session: AsyncSession, *, customer_id: str) -> Customer | None:
    """The customer, row-locked until the transaction ends (one erasure at a time)."""
    customer: Customer | None = await session.scalar(
        select(Customer).where(Customer.id == customer_id).with_for_update()
    )
    return customer


async def orders_of_customer(session: AsyncSession, *, customer_id: str) -> Sequence[Row[Any]]:
    """``(id, status)`` of every order of the customer."""
    return (
        await session.execute(select(Order.id, Order.status).where(Order.customer_id == customer_id))
    ).all()


async def clear_order_personal_data(
    session: AsyncSession, *, customer_id: str, payout_address_sealed: str, client_ip: str
) -> None:
    """Every order of the customer gets ``payout_address_sealed`` and ``client_ip`` (the erased values) and
    loses its transaction hashes (the payout's shows the payout address on a block explorer), in its columns
    and in any history step that carries them."""
    await session.execute(
        update(Order)
        .where(Order.customer_id == customer_id)
        .values(
            payout_address_sealed=payout_address_sealed,
            client_ip=client_ip,
            deposit_tx_hash=None,
            payout_tx_hash=None,
        )
        .execution_options(synchronize_session=False)
    )
    steps = await session.execute(
        select(OrderEvent.id, OrderEvent.details)
        .join(Order, Order.id == OrderEvent.order_id)
        .where(Order.customer_id == customer_id)
    )
    for step_id, details in steps:
        record = (details or {}).get("transaction")
        if isinstance(record, dict) and any(name in record for name in TRANSACTION_HASHES):
            kept = {name: value for name, value in record.items() if name not in TRANSACTION_HASHES}
            await session.execute(
                update(OrderEvent)
                .where(OrderEvent.id == step_id)
                .values(details={**details, "transaction": kept})
            )


async def delete_customer_credentials(session: AsyncSession, *, customer_id: str, email_index: str) -> None:
    """The customer's sessions, one-time codes and stored ``Idempotency-Key`` answers."""
    await session.execute(delete(CustomerSession).where(CustomerSession.customer_id == customer_id))
    await session.execute(delete(EmailCode).where(EmailCode.email_index == email_index))
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.owner == email_index))


async def undelivered_events(session: AsyncSession, *, aggregate_ids: list[str]) -> Sequence[Row[Any]]:
    """``(id, payload)`` of the outbox events about ``aggregate_ids`` not yet delivered (pending or dead)."""
    return (
        await session.execute(
            select(outbox.c.id, outbox.c.payload).where(
                outbox.c.delivered_at.is_(None), outbox.c.aggregate_id.in_(aggregate_ids)
            )
        )
    ).all()


async def replace_event_payload(session: AsyncSession, *, event_id: str, payload: Mapping[str, Any]) -> None:
    await session.execute(update(outbox).where(outbox.c.id == event_id).values(payload=payload))


async def hold_event_until(session: AsyncSession, *, event_id: str, available_at: datetime) -> None:
    """No relay delivers the event before ``available_at``."""
    await session.execute(update(outbox).where(outbox.c.id == event_id).values(available_at=available_at))
