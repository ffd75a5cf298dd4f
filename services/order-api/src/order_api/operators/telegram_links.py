"""One-time codes that link an operator to their Telegram account.

An admin issues a code for an operator (shown once); the operator sends ``/start <code>`` to the bot, and the
Telegram gateway redeems it here for the Telegram user who sent it. From then on the gateway acts for that
operator (``X-Operator-Telegram-Id``). An admin may also set or clear ``telegram_user_id`` on the operator
directly: either way the operator record is the one truth, and the gateway asks it who a Telegram user is
(:func:`read_telegram_link`), caching the answer briefly.

A code is 10 characters from an alphabet without look-alikes (about 50 bits: easy to type on a phone, not
guessable within its lifetime, all the less so under the per-user attempt limit). Only its HMAC under the
blind-index key is stored, so the table alone yields no usable code. A new code supersedes the operator's
unused ones. Redemption is single-use under concurrency: the operator's row is locked first (the order
issuing takes too, so the two cannot deadlock), then a conditional ``UPDATE`` consumes the code; of two
concurrent redemptions the second finds it consumed.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import cast

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.service import append_audit
from order_api.operators import repository
from order_api.operators.errors import (
    LinkCodeInvalidError,
    OperatorInactiveError,
    OperatorTelegramIdTakenError,
    TelegramLinkNotFoundError,
)
from order_api.operators.models import Operator, TelegramLinkCode, new_id
from order_api.operators.schemas import (
    RoleName,
    TelegramLinkCodeRead,
    TelegramLinkCreate,
    TelegramLinkRead,
)
from order_api.operators.service import (
    audit_operator,
    ensure_telegram_id_free,
    find_telegram_operator,
    load_operator,
)
from order_api.orders.lifecycle import Actor
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.apikeys import Caller
from servicekit.db import utcnow
from servicekit.ratelimit import RateLimiter

log = logging.getLogger("order_api.operators")

LINK_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L
LINK_CODE_LENGTH = 10
LINK_CODE_PURPOSE = "telegram-link-code"
TELEGRAM_LINK_LIMIT = "telegram-link"


def new_link_code() -> str:
    return "".join(secrets.choice(LINK_CODE_ALPHABET) for _ in range(LINK_CODE_LENGTH))


def normalise_link_code(code: str) -> str:
    """What was typed, as issued: upper case, without spaces or dashes."""
    return "".join(code.split()).replace("-", "").upper()


def link_code_hash(protection: DataProtection, code: str) -> str:
    return protection.keyed_digest(normalise_link_code(code), purpose=LINK_CODE_PURPOSE)


async def issue_telegram_link_code(
    *, session: AsyncSession, settings: Settings, protection: DataProtection, actor: Actor, operator_id: str
) -> TelegramLinkCodeRead:
    """An admin issues a one-time code for an active operator; it is returned once and supersedes the
    operator's unused codes."""
    operator = await load_operator(session, operator_id=operator_id)
    if not operator.active:
        raise OperatorInactiveError(
            f"Operator {operator_id} is deactivated; reactivate them before linking Telegram.",
            extra={"operator_id": operator_id},
        )
    now = utcnow()
    await repository.supersede_link_codes(session, operator_id=operator.id, now=now)
    code = new_link_code()
    row = TelegramLinkCode(
        id=new_id(),
        operator_id=operator.id,
        code_hash=link_code_hash(protection, code),
        issued_by=actor.label,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.telegram_link_code_ttl_seconds),
    )
    session.add(row)
    await session.flush()
    await audit_operator(
        session,
        actor=actor,
        action="operator.telegram_link_code_issued",
        operator=operator,
        link_code_id=row.id,
        expires_at=row.expires_at.isoformat(),
    )
    return TelegramLinkCodeRead(code=code, expires_at=row.expires_at)


async def link_telegram_account(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    rate_limiter: RateLimiter,
    gateway: Caller,
    request: TelegramLinkCreate,
) -> TelegramLinkRead:
    """The Telegram gateway redeems a code for the Telegram user who sent it: that user is linked to the
    code's operator (replacing an earlier link of theirs) and the code is spent, in one transaction.

    Wrong, expired, used and superseded codes, and codes of a since deactivated operator, all raise the same
    ``LinkCodeInvalidError``. Every attempt counts against the Telegram user's limit."""
    telegram_user_id = request.telegram_user_id
    await rate_limiter.hit(
        name=TELEGRAM_LINK_LIMIT,
        identifier=str(telegram_user_id),
        limit=settings.telegram_link_rate_limit,
        fail_open=False,  # this limit is what bounds guessing link codes
    )
    now = utcnow()
    code_hash = link_code_hash(protection, request.code)
    found = await repository.usable_link_code(session, code_hash=code_hash, now=now)
    if found is None:
        log.info("wrong Telegram link code", extra={"telegram_user_id": telegram_user_id})
        raise LinkCodeInvalidError()
    operator = await session.get(Operator, found.operator_id, with_for_update=True, populate_existing=True)
    if operator is None or not operator.active:
        raise LinkCodeInvalidError()
    if not await repository.consume_link_code(
        session, code_id=found.id, telegram_user_id=telegram_user_id, now=now
    ):
        raise LinkCodeInvalidError()  # a concurrent redemption (or a newer code) got there first

    await ensure_telegram_id_free(session, telegram_user_id=telegram_user_id, operator_id=operator.id)
    previous = operator.telegram_user_id
    operator.telegram_user_id = telegram_user_id
    operator.updated_at = now
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:  # another operator linked this Telegram user at the same moment
        raise OperatorTelegramIdTakenError(
            f"Telegram user {telegram_user_id} is linked to another operator.",
            extra={"telegram_user_id": telegram_user_id},
        ) from exc
    await append_audit(
        session,
        actor=Actor(
            kind="operator", id=operator.id, channel="telegram", role=operator.role, name=operator.name
        ),
        action="operator.telegram_linked",
        target_type="operator",
        target_id=operator.id,
        parameters={
            "telegram_user_id": telegram_user_id,
            "telegram_username": request.telegram_username,
            "previous_telegram_user_id": previous,
            "link_code_id": found.id,
            "via": gateway.name,
        },
    )
    log.info("operator linked to Telegram", extra={"operator_id": operator.id})
    return _link_read(operator)


def _link_read(operator: Operator) -> TelegramLinkRead:
    return TelegramLinkRead(
        operator_id=operator.id,
        name=operator.name,
        role=cast(RoleName, operator.role),
        telegram_user_id=cast(int, operator.telegram_user_id),
    )


async def read_telegram_link(*, session: AsyncSession, telegram_user_id: int) -> TelegramLinkRead:
    """Who the Telegram user is, however they were linked (``/start <code>`` or an admin's edit); ``404``
    when no active operator is linked to them."""
    operator = await find_telegram_operator(session, telegram_user_id=telegram_user_id)
    if operator is None:
        raise TelegramLinkNotFoundError(
            f"No active operator is linked to Telegram user {telegram_user_id}.",
            extra={"telegram_user_id": telegram_user_id},
        )
    return _link_read(operator)
