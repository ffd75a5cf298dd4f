"""Events to the notifier carry the customer's address sealed, from any session.

The protection that seals it is an argument of every function that builds such an event (not something a
session may or may not carry), so an order announced or changed by a worker, a peer's event or a script
still tells the notifier whom to write to. And order-api refuses to start without keys it can use.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.db import outbox
from order_api.main import create_app
from order_api.orders.intake_persistence import PAYOUT_CONTEXT, announce_order
from order_api.orders.lifecycle import ORDER_CREATED, ORDER_STATUS_CHANGED, SYSTEM_EXPIRY, change_status
from order_api.orders.models import AllocationState, Order, OrderStatus
from order_api.protection import DataProtection
from order_api.testing import CustomerFactory, SettingsFactory
from servicekit.db import utcnow
from servicekit.sealing import open_sealed_payload
from servicekit.settings import StartupRefusedError


async def _order(session: AsyncSession, protection: DataProtection, *, customer_id: str) -> Order:
    now = utcnow()
    order = Order(
        id=str(uuid.uuid4()),
        customer_id=customer_id,
        from_currency="BTC",
        from_network="bitcoin",
        to_currency="USDT",
        to_network="tron",
        amount=Decimal("0.015"),
        payout_address_sealed=protection.seal("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", context=PAYOUT_CONTEXT),
        locale="en",
        status=OrderStatus.AWAITING_ADDRESS.value,
        priority="normal",
        allocation_state=AllocationState.PENDING.value,
        client_ip="198.51.100.7",
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(minutes=30),
    )
    session.add(order)
    await session.flush()
    return order


async def _event(session: AsyncSession, *, order_id: str, event_type: str) -> dict[str, Any]:
    [payload] = (
        await session.execute(
            select(outbox.c.payload).where(
                outbox.c.aggregate_id == order_id, outbox.c.event_type == event_type
            )
        )
    ).scalars()
    return dict(payload)


async def test_order_created_and_status_changed_carry_the_customers_email_sealed_from_a_bare_session(
    db_session: AsyncSession, protection: DataProtection, make_customer: CustomerFactory
) -> None:
    email = f"Bea.{uuid.uuid4().hex[:8]}@example.com"
    customer = await make_customer(email)
    order = await _order(db_session, protection, customer_id=customer.id)
    assert db_session.info.get("protection") is None  # a session that knows nothing of the app

    await announce_order(db_session, protection=protection, order=order)
    await change_status(
        db_session, protection=protection, order=order, to=OrderStatus.EXPIRED, actor=SYSTEM_EXPIRY
    )

    for event_type in (ORDER_CREATED, ORDER_STATUS_CHANGED):
        payload = await _event(db_session, order_id=order.id, event_type=event_type)
        assert "customer_email" not in payload  # never in clear in the outbox
        assert email.lower() not in str(payload).lower()
        opened = open_sealed_payload(
            protection.event_keyring(), payload, event_type=event_type, aggregate_id=order.id
        )
        assert opened["customer_email"] == email


def test_order_api_without_usable_keys_refuses_to_start_with_one_line(make_settings: SettingsFactory) -> None:
    with pytest.raises(StartupRefusedError) as refused:
        create_app(make_settings(data_key_current="retired"))
    message = str(refused.value)
    assert message.startswith("order-api cannot start: ")
    assert "'retired' is not among the data keys" in message
    assert "\n" not in message
