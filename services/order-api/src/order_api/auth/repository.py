"""The customer sessions' and email codes' queries: look-ups by token hash and the conditional ``UPDATE``s that
make a code's attempts and its use race-free. Repositories only execute; the caller commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from order_api.auth.models import CustomerSession, EmailCode


async def live_session(session: AsyncSession, *, token_hash: str, now: datetime) -> Row[Any] | None:
    """``(id, customer_id, kind, order_id)`` of the unrevoked, unexpired session holding this token."""
    s = CustomerSession
    return (
        await session.execute(
            select(s.id, s.customer_id, s.kind, s.order_id).where(
                s.token_hash == token_hash, s.revoked_at.is_(None), s.expires_at > now
            )
        )
    ).first()


async def session_is_live(session: AsyncSession, *, session_id: str, now: datetime) -> bool:
    """Whether the session ``session_id`` is still unrevoked and unexpired."""
    s = CustomerSession
    found = await session.scalar(
        select(s.id).where(s.id == session_id, s.revoked_at.is_(None), s.expires_at > now)
    )
    return found is not None


async def revoke_session(session: AsyncSession, *, session_id: str, now: datetime) -> None:
    await session.execute(
        update(CustomerSession)
        .where(CustomerSession.id == session_id, CustomerSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def supersede_email_codes(session: AsyncSession, *, email_index: str, now: datetime) -> None:
    """Spend every unused code sent to the email (a new one replaces them)."""
    await session.execute(
        update(EmailCode)
        .where(EmailCode.email_index == email_index, EmailCode.consumed_at.is_(None))
        .values(consumed_at=now)
    )


async def take_code_attempt(
    session: AsyncSession, *, email_index: str, max_attempts: int, now: datetime
) -> Row[Any] | None:
    """Take one attempt of the newest unused code sent to the email, in one conditional ``UPDATE`` (parallel
    guesses cannot check more than ``max_attempts``); ``(id, code_hash, attempts)`` of the code, or ``None``
    when it has none left, has expired or there is none."""
    newest = aliased(EmailCode)  # its own FROM: not correlated to the UPDATE's row
    latest = (
        select(newest.id)
        .where(newest.email_index == email_index, newest.consumed_at.is_(None))
        .order_by(newest.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        await session.execute(
            update(EmailCode)
            .where(
                EmailCode.id == latest,
                EmailCode.consumed_at.is_(None),
                EmailCode.attempts < max_attempts,
                EmailCode.expires_at > now,
            )
            .values(attempts=EmailCode.attempts + 1)
            .returning(EmailCode.id, EmailCode.code_hash, EmailCode.attempts)
            .execution_options(synchronize_session=False)
        )
    ).first()


async def consume_email_code(session: AsyncSession, *, code_id: str, now: datetime) -> bool:
    """Spend the code unless it is spent already; ``False`` when a parallel request spent it first."""
    used = await session.execute(
        update(EmailCode)
        .where(EmailCode.id == code_id, EmailCode.consumed_at.is_(None))
        .values(consumed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(used.rowcount == 1)  # type: ignore[attr-defined]
