"""Customers are found or created by email; the email is stored only sealed."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_api.customers.models import Customer
from order_api.customers.schemas import CustomerEmail, Locale
from order_api.customers.service import customer_email, find_customer_by_email, find_or_create_customer
from order_api.db import SCHEMA
from order_api.protection import DataProtection
from order_api.testing import CustomerFactory
from servicekit.db import create_engine


async def test_the_same_email_finds_the_same_customer_whatever_its_case(
    db_session: AsyncSession, protection: DataProtection, unique_email: str
) -> None:
    first = await find_or_create_customer(
        session=db_session, protection=protection, email=unique_email, locale="ru"
    )
    again = await find_or_create_customer(
        session=db_session, protection=protection, email=f"  {unique_email.upper()} ", locale="en"
    )
    assert again.id == first.id
    assert first.role == "customer"
    assert first.completed_orders == 0
    assert again.locale == "ru"  # a known customer keeps their locale
    assert customer_email(protection=protection, customer=again) == unique_email
    found = await find_customer_by_email(
        session=db_session, protection=protection, email=unique_email.lower()
    )
    assert found is not None
    assert found.id == first.id
    other = await find_or_create_customer(
        session=db_session, protection=protection, email=f"other.{unique_email}", locale="en"
    )
    assert other.id != first.id


async def test_the_email_is_stored_only_sealed(
    db_session: AsyncSession, protection: DataProtection, make_customer: CustomerFactory, unique_email: str
) -> None:
    customer = await make_customer(unique_email)
    row = (await db_session.execute(select(Customer.__table__).where(Customer.id == customer.id))).one()
    values = [str(value).lower() for value in row._mapping.values()]
    for needle in (unique_email.lower(), unique_email.split("@")[0].lower(), "example.com"):
        assert not any(needle in value for value in values), f"{needle!r} stored in clear: {row}"
    assert row.email_index == protection.email_index(unique_email)
    assert protection.open(row.email_sealed, context="customer.email") == unique_email


async def test_twenty_simultaneous_first_orders_with_one_email_make_one_customer(
    own_database_url: str, protection: DataProtection, unique_email: str
) -> None:
    """Committed for real, in a database of its own: every attempt runs in its own transaction."""
    engine = create_engine(own_database_url, schema=SCHEMA, pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    start = asyncio.Event()

    async def first_order(attempt: int) -> str:
        async with sessions() as session:
            await session.connection()  # hold a connection before the start signal: a real race
            await start.wait()
            variant = unique_email.upper() if attempt % 2 else unique_email
            customer = await find_or_create_customer(
                session=session, protection=protection, email=variant, locale="en"
            )
            await session.commit()
            return customer.id

    try:
        tasks = [asyncio.create_task(first_order(i)) for i in range(20)]
        await asyncio.sleep(0.2)
        start.set()
        ids = await asyncio.gather(*tasks)
        async with sessions() as session:
            count = await session.scalar(select(func.count()).select_from(Customer))
    finally:
        await engine.dispose()
    assert len(set(ids)) == 1
    assert count == 1


class _Contact(BaseModel):
    email: CustomerEmail
    locale: Locale = "en"


@pytest.mark.parametrize(
    "email",
    ["alice@example.com", "  a.b+tag@sub.example.co.uk ", "O'Hara@example.ie", "x@xn--80ak6aa92e.com"],
)
def test_plausible_emails_are_accepted(email: str) -> None:
    assert _Contact(email=email).email == email.strip()


@pytest.mark.parametrize(
    "email",
    [
        "",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "a b@example.com",
        "alice@@example.com",
        "alice@example..com",
        "alice.@example.com",
        "a\n@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_implausible_emails_are_refused_with_a_clear_message(email: str) -> None:
    with pytest.raises(ValidationError) as raised:
        _Contact(email=email)
    assert raised.value.errors()[0]["loc"] == ("email",)


@pytest.mark.parametrize(
    ("locale", "ok"), [("en", True), ("pt-BR", True), ("ru", True), ("english!", False), ("", False)]
)
def test_locales_are_language_tags(locale: str, ok: bool) -> None:
    if ok:
        assert _Contact(email="a@example.com", locale=locale).locale == locale
    else:
        with pytest.raises(ValidationError):
            _Contact(email="a@example.com", locale=locale)
