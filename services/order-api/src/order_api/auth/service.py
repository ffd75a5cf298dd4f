"""Customer sessions and the emailed one-time codes that upgrade them.

A session made by posting an email with an order reaches that order only: knowing someone's email must not
open their other orders (no account takeover through auto-login). A full session needs proof of the
mailbox: a 6-digit code, sent through the outbox to notifier, stored only as a keyed hash, valid for
``email_code_minutes`` and for ``email_code_max_attempts`` guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import CustomerEmailCodeRequested
from order_api.auth import repository
from order_api.auth.errors import EmailCodeInvalidError, SessionInvalidError
from order_api.auth.models import CustomerSession, EmailCode, new_id
from order_api.customers.service import customer_email, find_customer_by_email
from order_api.db import outbox
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import utcnow
from servicekit.outbox import publish
from servicekit.ratelimit import RateLimiter

log = logging.getLogger("order_api.auth")

SessionKind = Literal["order", "full"]
SESSION_TOKEN_PREFIX = "cs_"  # noqa: S105 (a prefix, not a secret)
EMAIL_CODE_DIGITS = 6
EMAIL_CODE_PURPOSE = "email-code"
EMAIL_CODE_EVENT = CustomerEmailCodeRequested.event_type
AUTH_LIMIT = "auth"
EMAIL_CODE_LIMIT = "email-code"


@dataclass(frozen=True)
class IssuedSession:
    """A session just opened. ``token`` is shown to the customer once and never stored."""

    token: str
    session_id: str
    kind: SessionKind
    expires_at: datetime


@dataclass(frozen=True)
class CustomerPrincipal:
    """The customer a request is made by, and what their session reaches."""

    customer_id: str
    session_id: str
    kind: SessionKind
    order_id: str | None

    def may_access(self, order_id: str) -> bool:
        """A full session reaches any order (the caller checks the order's ``customer_id``); an order
        session only its own order."""
        return self.kind == "full" or self.order_id == order_id


@dataclass(frozen=True)
class VerifiedEmail:
    """A mailbox proven by its code, and the full session it earned."""

    customer_id: str
    session: IssuedSession


def hash_token(token: str) -> str:
    """How a session token is stored: sha256 hex (tokens are 256-bit random; nothing to brute-force)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def _open_session(
    *, session: AsyncSession, customer_id: str, kind: SessionKind, order_id: str | None, lifetime: timedelta
) -> IssuedSession:
    token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    row = CustomerSession(
        id=new_id(),
        customer_id=customer_id,
        token_hash=hash_token(token),
        kind=kind,
        order_id=order_id,
        created_at=now,
        expires_at=now + lifetime,
    )
    session.add(row)
    await session.flush()
    return IssuedSession(token=token, session_id=row.id, kind=kind, expires_at=row.expires_at)


async def open_order_session(
    *, session: AsyncSession, settings: Settings, customer_id: str, order_id: str
) -> IssuedSession:
    """A session reaching one order only, made when a customer creates it by posting their email."""
    return await _open_session(
        session=session,
        customer_id=customer_id,
        kind="order",
        order_id=order_id,
        lifetime=timedelta(days=settings.order_session_days),
    )


async def open_full_session(*, session: AsyncSession, settings: Settings, customer_id: str) -> IssuedSession:
    """A session reaching all of the customer's orders; only after the mailbox is proven."""
    return await _open_session(
        session=session,
        customer_id=customer_id,
        kind="full",
        order_id=None,
        lifetime=timedelta(hours=settings.full_session_hours),
    )


async def authenticate_customer(*, session: AsyncSession, token: str) -> CustomerPrincipal:
    """The customer holding ``token``; ``SessionInvalidError`` when it is unknown, revoked or expired."""
    if not token.startswith(SESSION_TOKEN_PREFIX):
        raise SessionInvalidError("This is not a customer session token.")
    row = await repository.live_session(session, token_hash=hash_token(token), now=utcnow())
    if row is None:
        raise SessionInvalidError("The session is unknown, has expired or was ended.")
    return CustomerPrincipal(
        customer_id=row.customer_id,
        session_id=row.id,
        kind=cast(SessionKind, row.kind),
        order_id=row.order_id,
    )


async def check_still_live(*, session: AsyncSession, principal: CustomerPrincipal) -> None:
    """``SessionInvalidError`` once ``principal``'s session was ended or expired (a long-lived answer, such as an
    order stream, asks again before each thing it tells)."""
    if not await repository.session_is_live(session, session_id=principal.session_id, now=utcnow()):
        raise SessionInvalidError("The session is unknown, has expired or was ended.")


async def get_customer_session(*, session: AsyncSession, session_id: str) -> CustomerSession:
    """The stored session (without its token), e.g. for "who am I"."""
    row = await session.get(CustomerSession, session_id)
    if row is None:
        raise SessionInvalidError("The session is unknown, has expired or was ended.")
    return row


async def revoke_session(*, session: AsyncSession, session_id: str) -> None:
    """End a session: its token is refused from now on."""
    await repository.revoke_session(session, session_id=session_id, now=utcnow())


def _code_hash(protection: DataProtection, *, code_id: str, code: str) -> str:
    return protection.keyed_digest(f"{code_id}:{code}", purpose=EMAIL_CODE_PURPOSE)


@dataclass(frozen=True)
class MailboxProof:
    """One client's attempt at proving a mailbox (asking for a code, or guessing it), and what it works with."""

    session: AsyncSession
    settings: Settings
    protection: DataProtection
    rate_limiter: RateLimiter
    client_ip: str

    async def count_attempt(self) -> None:
        """Fail closed: these limits bound email codes sent to an inbox and guesses (README, Security)."""
        await self.rate_limiter.hit(
            name=AUTH_LIMIT, identifier=self.client_ip, limit=self.settings.auth_rate_limit, fail_open=False
        )


async def request_email_code(*, proof: MailboxProof, email: str, locale: str | None) -> int:
    """Email a one-time code to the customer with this email, if there is one; returns how many seconds a
    code is valid. The caller cannot tell whether a customer exists: the answer and the limits are the
    same either way. A new code supersedes older unused ones. The code leaves only through the outbox,
    sealed for the notifier, and even that sealed copy is masked once the notifier has it."""
    session, settings, protection = proof.session, proof.settings, proof.protection
    await proof.count_attempt()
    index = protection.email_index(email)
    await proof.rate_limiter.hit(
        name=EMAIL_CODE_LIMIT, identifier=index, limit=settings.email_code_rate_limit, fail_open=False
    )
    lifetime = timedelta(minutes=settings.email_code_minutes)
    customer = await find_customer_by_email(session=session, protection=protection, email=email)
    if customer is None:
        log.info("email code requested for an email no customer has")
        return int(lifetime.total_seconds())

    now = utcnow()
    await repository.supersede_email_codes(session, email_index=index, now=now)
    code = f"{secrets.randbelow(10**EMAIL_CODE_DIGITS):0{EMAIL_CODE_DIGITS}d}"
    code_id = new_id()
    session.add(
        EmailCode(
            id=code_id,
            email_index=index,
            code_hash=_code_hash(protection, code_id=code_id, code=code),
            expires_at=now + lifetime,
            attempts=0,
            created_at=now,
        )
    )
    await session.flush()
    requested = CustomerEmailCodeRequested(
        customer_id=customer.id,
        locale=locale or customer.locale,
        expires_at=now + lifetime,
        # The address and the code travel sealed for the notifier: never in clear in the outbox or its WAL.
        **protection.sealed_event_fields(
            {"email": customer_email(protection=protection, customer=customer), "code": code},
            event_type=EMAIL_CODE_EVENT,
            aggregate_id=customer.id,
        ),
    )
    await publish(session, outbox, destination="notifier", event=requested, aggregate_id=customer.id)
    log.info("email code issued", extra={"customer_id": customer.id})
    return int(lifetime.total_seconds())


async def verify_email_code(*, proof: MailboxProof, email: str, code: str) -> VerifiedEmail:
    """Exchange the emailed code for a full session.

    Every guess first takes one of the code's attempts in a single conditional ``UPDATE`` (race-free on
    both databases: parallel guesses cannot check more than ``email_code_max_attempts`` codes), then is
    compared in constant time. A wrong guess is committed before the error is raised, so the count survives
    the error response; wrong, expired, spent and unknown codes all raise the same ``EmailCodeInvalidError``.
    """
    session, settings, protection = proof.session, proof.settings, proof.protection
    await proof.count_attempt()
    index = protection.email_index(email)
    now = utcnow()
    reserved = await repository.take_code_attempt(
        session, email_index=index, max_attempts=settings.email_code_max_attempts, now=now
    )
    if reserved is None:
        _code_hash(protection, code_id=new_id(), code=code)  # the same work as a real comparison
        raise EmailCodeInvalidError()
    expected = _code_hash(protection, code_id=reserved.id, code=code)
    if not hmac.compare_digest(expected, reserved.code_hash):
        if reserved.attempts >= settings.email_code_max_attempts:
            await repository.consume_email_code(session, code_id=reserved.id, now=now)
        # The one place this service commits by itself: the spent attempt must outlive the error response.
        await session.commit()
        log.info("wrong email code", extra={"attempts": reserved.attempts})
        raise EmailCodeInvalidError()
    used = await repository.consume_email_code(session, code_id=reserved.id, now=now)
    customer = await find_customer_by_email(session=session, protection=protection, email=email)
    if not used or customer is None:
        raise EmailCodeInvalidError()  # a parallel request used the same code first
    issued = await open_full_session(session=session, settings=settings, customer_id=customer.id)
    log.info("email verified, full session opened", extra={"customer_id": customer.id})
    return VerifiedEmail(customer_id=customer.id, session=issued)
