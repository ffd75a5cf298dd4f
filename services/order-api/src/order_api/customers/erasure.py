"""Erasing a customer: what identifies them goes, irreversibly; their orders stay as financial records.

In one transaction: the sealed email and its blind index are replaced (the email no longer finds the
customer, and a later order with it makes a new customer), every order's sealed payout address is emptied
and its client address cleared, the customer's sessions, one-time codes and stored ``Idempotency-Key``
answers are deleted, and events about them still waiting in the outbox lose the personal fields they carry
(a receiver then has nobody to tell). Amounts, currencies, statuses and history stay. The audit trail
records that an erasure happened (who, when, which customer) and nothing personal; ``customer.erased`` tells
the notifier to forget what it holds about the customer. An order still open needs its payout address, so a
customer with one is not erased (``409``) until it is finished or cancelled.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import CustomerErased
from order_api.audit.service import append_audit
from order_api.customers import repository
from order_api.customers.errors import CustomerHasOpenOrdersError, CustomerNotFoundError
from order_api.customers.models import ERASED_EMAIL_SEALED, erased_email_index
from order_api.customers.schemas import CustomerErasureRead
from order_api.db import outbox
from order_api.orders.lifecycle import OPEN, Actor
from servicekit.db import utcnow
from servicekit.outbox import REDACT_AFTER_DELIVERY, publish, without_personal_data
from servicekit.settings import OUTBOX_LEASE_SECONDS

CUSTOMER_ERASED = CustomerErased.event_type
ERASED_PAYOUT_ADDRESS = ""
"""``payout_address_sealed`` of an erased customer's order: nothing to open (read as ``null``)."""
ERASED_CLIENT_IP = ""


async def erase_customer(*, session: AsyncSession, actor: Actor, customer_id: str) -> CustomerErasureRead:
    """Erase the customer (see the module); a customer already erased gets the first erasure's answer."""
    customer = await repository.customer_for_update(session, customer_id=customer_id)  # one erasure at a time
    if customer is None:
        raise CustomerNotFoundError(f"No customer has the id {customer_id}.")
    if customer.erased_at is not None:
        return CustomerErasureRead(customer_id=customer.id, erased_at=customer.erased_at)
    orders = await repository.orders_of_customer(session, customer_id=customer.id)
    still_open = sorted(order.id for order in orders if order.status in OPEN)
    if still_open:
        raise CustomerHasOpenOrdersError(
            f"The customer has {len(still_open)} open order(s); finish or cancel them first: their payout "
            "addresses are still needed.",
            extra={"open_orders": still_open},
        )
    order_ids = [order.id for order in orders]
    await _forget_personal_data_in_outbox(session, aggregate_ids=[customer.id, *order_ids])
    await repository.clear_order_personal_data(
        session,
        customer_id=customer.id,
        payout_address_sealed=ERASED_PAYOUT_ADDRESS,
        client_ip=ERASED_CLIENT_IP,
    )
    await repository.delete_customer_credentials(
        session, customer_id=customer.id, email_index=customer.email_index
    )
    erased_at = utcnow()
    customer.email_sealed = ERASED_EMAIL_SEALED
    customer.email_index = erased_email_index(customer.id)
    customer.erased_at = erased_at
    await session.flush()
    await append_audit(
        session,
        actor=actor,
        action=CUSTOMER_ERASED,
        target_type="customer",
        target_id=customer.id,
        parameters={"orders": len(order_ids)},
    )
    erased = CustomerErased(customer_id=customer.id, erased_at=erased_at)
    event_id = await publish(session, outbox, destination="notifier", event=erased, aggregate_id=customer.id)
    # An event about one of their orders that a relay was delivering as this commits still carries what it
    # read before; such a delivery ends within its claim's lease, so the notifier hears of the erasure after.
    await repository.hold_event_until(
        session, event_id=event_id, available_at=erased_at + timedelta(seconds=OUTBOX_LEASE_SECONDS)
    )
    return CustomerErasureRead(customer_id=customer.id, erased_at=erased_at)


async def _forget_personal_data_in_outbox(session: AsyncSession, *, aggregate_ids: list[str]) -> None:
    """Events about the customer or their orders not yet delivered (pending or dead-lettered) lose the
    personal fields they list (``_redact_after_delivery``); delivered ones were masked on delivery."""
    for event in await repository.undelivered_events(session, aggregate_ids=aggregate_ids):
        if event.payload.get(REDACT_AFTER_DELIVERY):
            await repository.replace_event_payload(
                session, event_id=event.id, payload=without_personal_data(event.payload)
            )
