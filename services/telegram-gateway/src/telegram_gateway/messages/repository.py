"""The deliveries' queries: the insert-or-nothing that claims a message id, and its outcome. Repositories
only execute; the caller commits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.db import try_insert
from telegram_gateway.messages.models import MessageDelivery


async def claim_delivery(session: AsyncSession, *, values: Mapping[str, Any]) -> bool:
    """Insert the delivery row; ``False`` when its message id is known already (a concurrent insert of it
    waits for the first one's transaction and then does nothing)."""
    return await try_insert(session, MessageDelivery, values, conflict=["message_id"])


async def delivery(session: AsyncSession, *, message_id: str) -> MessageDelivery | None:
    found: MessageDelivery | None = await session.scalar(
        select(MessageDelivery)
        .where(MessageDelivery.message_id == message_id)
        .execution_options(populate_existing=True)
    )
    return found


async def record_outcome(
    session: AsyncSession, *, message_id: str, outcome: str, telegram_message_ids: list[int]
) -> None:
    await session.execute(
        update(MessageDelivery)
        .where(MessageDelivery.message_id == message_id)
        .values(outcome=outcome, telegram_message_ids=telegram_message_ids)
    )
