"""Linking a Telegram user to an operator, and finding who a Telegram user is."""

from __future__ import annotations

import logging

from sqlalchemy import delete

from servicekit.db import Database, utcnow
from telegram_gateway.clients.order_api import OrderApiClient
from telegram_gateway.operators.models import OperatorLink

log = logging.getLogger("telegram_gateway.operators")


async def find_link(*, database: Database, telegram_user_id: int) -> OperatorLink | None:
    async with database.sessionmaker() as session:
        return await session.get(OperatorLink, telegram_user_id)


async def link_operator(
    *,
    database: Database,
    order_api: OrderApiClient,
    code: str,
    telegram_user_id: int,
    telegram_username: str | None,
) -> OperatorLink:
    """Redeem the one-time ``code`` at order-api (which links the operator to this Telegram user) and
    remember the link. An operator has one Telegram account: a link of theirs to another user is dropped."""
    operator = await order_api.redeem_link_code(
        code=code, telegram_user_id=telegram_user_id, telegram_username=telegram_username
    )
    async with database.sessionmaker.begin() as session:
        await session.execute(
            delete(OperatorLink).where(
                OperatorLink.operator_id == operator.operator_id,
                OperatorLink.telegram_user_id != telegram_user_id,
            )
        )
        link = await session.get(OperatorLink, telegram_user_id)
        if link is None:
            link = OperatorLink(telegram_user_id=telegram_user_id)
            session.add(link)
        link.operator_id = operator.operator_id
        link.name = operator.name
        link.role = operator.role
        link.telegram_username = telegram_username
        link.linked_at = utcnow()
        await session.flush()
    log.info(
        "operator linked to Telegram",
        extra={"operator_id": operator.operator_id, "telegram_user_id": telegram_user_id},
    )
    return link


async def forget_link(*, database: Database, telegram_user_id: int) -> None:
    """order-api no longer knows this Telegram user (unlinked or deactivated): stop acting for them."""
    async with database.sessionmaker.begin() as session:
        await session.execute(delete(OperatorLink).where(OperatorLink.telegram_user_id == telegram_user_id))
    log.info("operator link dropped: order-api refuses it", extra={"telegram_user_id": telegram_user_id})
