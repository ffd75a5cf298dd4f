"""Finding customers by email and reading their email back."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.customers import repository
from order_api.customers.models import CUSTOMER_ROLE, Customer, new_customer_id
from order_api.protection import DataProtection
from servicekit.db import utcnow

EMAIL_CONTEXT = "customer.email"
"""The associated data a customer's email is sealed with."""


async def find_customer_by_email(
    *, session: AsyncSession, protection: DataProtection, email: str
) -> Customer | None:
    """The customer whose (normalised) email this is, if any."""
    return await repository.customer_by_email_index(session, email_index=protection.email_index(email))


async def find_or_create_customer(
    *, session: AsyncSession, protection: DataProtection, email: str, locale: str
) -> Customer:
    """The customer with this email, created (role ``customer``) on their first order.

    Race-safe: two first orders with one email at the same time both ``INSERT … ON CONFLICT DO NOTHING``
    on the unique blind index; the loser's insert waits for the winner's commit and does nothing, and its
    ``SELECT`` then finds the winner's row (READ COMMITTED takes a fresh snapshot per statement). A known
    customer keeps the locale they had.
    """
    existing = await find_customer_by_email(session=session, protection=protection, email=email)
    if existing is not None:
        return existing
    index = protection.email_index(email)
    await repository.insert_customer_unless_known(
        session, values=_new_customer(protection, email=email, index=index, locale=locale)
    )
    customer = await repository.customer_by_email_index(session, email_index=index)
    if customer is None:  # pragma: no cover - the row exists after an insert or a conflict on it
        raise RuntimeError("customer row vanished between INSERT and SELECT")
    return customer


def _new_customer(protection: DataProtection, *, email: str, index: str, locale: str) -> dict[str, object]:
    return {
        "id": new_customer_id(),
        "email_sealed": protection.seal(email.strip(), context=EMAIL_CONTEXT),
        "email_index": index,
        "locale": locale,
        "role": CUSTOMER_ROLE,
        "created_at": utcnow(),
        "completed_orders": 0,
    }


def customer_email(*, protection: DataProtection, customer: Customer) -> str:
    """The customer's email address, opened from its sealed form."""
    return protection.open(customer.email_sealed, context=EMAIL_CONTEXT)


async def lock_or_create_customer(
    *, session: AsyncSession, protection: DataProtection, email: str, locale: str
) -> Customer:
    """The customer with this email (created on their first order), row-locked until the transaction ends.

    One round trip: an upsert whose conflict branch rewrites nothing but takes the row lock, so one
    customer's concurrent orders are serialised (the open-order limit cannot be raced past) and two first
    orders with one email still end with one customer.
    """
    index = protection.email_index(email)
    return await repository.upsert_locked_customer(
        session, values=_new_customer(protection, email=email, index=index, locale=locale)
    )
