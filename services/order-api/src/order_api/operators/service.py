"""Operator accounts and who a request is made by.

Personal tokens are ``op_`` + 256 random bits, shown once, stored as SHA-256 hex (nothing to brute-force),
optionally expiring, revocable and rotatable. A request is made by an operator (their token), by the admin
API key (scope ``admin``), or by the Telegram gateway for the operator linked to a Telegram user (its key
with scope ``orders:act-as-operator`` and ``X-Operator-Telegram-Id``). The principal remembers which: an
identity *acted for* holds only an operator's powers on orders (the bot's work), never an admin's or
support's, whatever the operator's role (see ``operators.dependencies``). Every change to an account is
audited.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.service import append_audit
from order_api.operators import repository
from order_api.operators.errors import (
    OperatorForbiddenError,
    OperatorNotFoundError,
    OperatorTelegramIdTakenError,
    OperatorTokenInvalidError,
    TelegramOperatorUnknownError,
)
from order_api.operators.models import Operator, OperatorRole, new_id
from order_api.operators.schemas import (
    OperatorCreate,
    OperatorCreated,
    OperatorPage,
    OperatorRead,
    OperatorTokenRead,
    OperatorUpdate,
    PresenceName,
    RoleName,
)
from order_api.orders.lifecycle import Actor
from order_api.settings import Settings
from servicekit.apikeys import Caller
from servicekit.db import utcnow

OPERATOR_TOKEN_PREFIX = "op_"  # noqa: S105 (a prefix, not a secret)
ADMIN_SCOPE = "admin"
ACT_AS_OPERATOR_SCOPE = "orders:act-as-operator"
Channel = Literal["rest", "telegram"]
NULLABLE = frozenset({"telegram_user_id", "max_held_orders"})
"""The fields of an operator an explicit ``null`` unsets."""
Credential = Literal["operator-token", "api-key", "acted-for"]
"""How a principal was authenticated: its own personal token, an API key acting as itself (the admin key),
or a service's key acting for an operator it names (the Telegram gateway)."""


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    """Who an operator request is made by, and how they proved it. ``operator_id`` is ``None`` for the admin
    API key, which is no operator account (it cannot hold orders)."""

    operator_id: str | None
    role: RoleName
    channel: Channel
    name: str
    credential: Credential

    @property
    def acted_for(self) -> bool:
        """Named by a service's key rather than proven by a credential of their own."""
        return self.credential == "acted-for"

    @property
    def actor(self) -> Actor:
        if self.operator_id is None:
            return Actor(kind="api-key", id=self.name, channel=self.channel, role=self.role, name=self.name)
        return Actor(
            kind="operator", id=self.operator_id, channel=self.channel, role=self.role, name=self.name
        )

    @property
    def is_admin(self) -> bool:
        """Admin powers (driving anyone's order) need the admin's own credential, never an acted-for one."""
        return self.role == OperatorRole.ADMIN.value and not self.acted_for


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _principal(operator: Operator, credential: Credential) -> OperatorPrincipal:
    return OperatorPrincipal(
        operator_id=operator.id,
        role=cast(RoleName, operator.role),
        channel="telegram" if credential == "acted-for" else "rest",
        name=operator.name,
        credential=credential,
    )


async def authenticate_operator(*, session: AsyncSession, token: str) -> OperatorPrincipal:
    """The active operator whose personal token this is; ``401`` when unknown, revoked or expired."""
    operator = await repository.operator_by_token(session, token_hash=hash_token(token))
    if operator is None or (operator.token_expires_at is not None and operator.token_expires_at <= utcnow()):
        raise OperatorTokenInvalidError("The operator token is unknown, revoked or expired.")
    return _principal(operator, "operator-token")


async def find_telegram_operator(session: AsyncSession, *, telegram_user_id: int) -> Operator | None:
    """The active operator linked to this Telegram user: the one source of truth the gateway acts on."""
    return await repository.active_operator_of_telegram_user(session, telegram_user_id=telegram_user_id)


async def principal_for_api_key(
    *, session: AsyncSession, caller: Caller, telegram_user_id: int | None
) -> OperatorPrincipal:
    """The admin key acts as admin; the Telegram gateway's key acts for the linked, active operator."""
    if ACT_AS_OPERATOR_SCOPE in caller.scopes and telegram_user_id is not None:
        operator = await find_telegram_operator(session, telegram_user_id=telegram_user_id)
        if operator is None:
            raise TelegramOperatorUnknownError(
                f"No active operator is linked to Telegram user {telegram_user_id}.",
                extra={"telegram_user_id": telegram_user_id},
            )
        return _principal(operator, "acted-for")
    if ADMIN_SCOPE in caller.scopes:
        return OperatorPrincipal(
            operator_id=None, role="admin", channel="rest", name=caller.name, credential="api-key"
        )
    if ACT_AS_OPERATOR_SCOPE in caller.scopes:
        raise TelegramOperatorUnknownError("Name the operator with the X-Operator-Telegram-Id header.")
    raise OperatorForbiddenError("This API key may not act on operator routes.")


def read_operator(operator: Operator) -> OperatorRead:
    now = utcnow()
    return OperatorRead(
        id=operator.id,
        name=operator.name,
        role=cast(RoleName, operator.role),
        telegram_user_id=operator.telegram_user_id,
        active=operator.active,
        token_active=operator.token_hash is not None
        and operator.token_revoked_at is None
        and (operator.token_expires_at is None or operator.token_expires_at > now),
        token_expires_at=operator.token_expires_at,
        max_held_orders=operator.max_held_orders,
        presence=cast(PresenceName, operator.presence),
        presence_since=operator.presence_since,
        created_at=operator.created_at,
        updated_at=operator.updated_at,
    )


def _issue_token(operator: Operator, *, settings: Settings, now: datetime) -> str:
    """Give ``operator`` a new personal token (the old one stops working); returns it, for showing once."""
    token = OPERATOR_TOKEN_PREFIX + secrets.token_urlsafe(32)
    operator.token_hash = hash_token(token)
    operator.token_issued_at = now
    operator.token_revoked_at = None
    operator.token_expires_at = (
        now + timedelta(days=settings.operator_token_days) if settings.operator_token_days else None
    )
    operator.updated_at = now
    return token


async def ensure_telegram_id_free(
    session: AsyncSession, *, telegram_user_id: int | None, operator_id: str | None = None
) -> None:
    if telegram_user_id is None:
        return
    holder = await repository.operator_id_of_telegram_user(session, telegram_user_id=telegram_user_id)
    if holder is not None and holder != operator_id:
        raise OperatorTelegramIdTakenError(
            f"Telegram user {telegram_user_id} is linked to another operator.",
            extra={"telegram_user_id": telegram_user_id},
        )


async def audit_operator(
    session: AsyncSession, *, actor: Actor, action: str, operator: Operator, **parameters: object
) -> None:
    await append_audit(
        session,
        actor=actor,
        action=action,
        target_type="operator",
        target_id=operator.id,
        parameters=parameters,
    )


async def create_operator(
    *, session: AsyncSession, settings: Settings, actor: Actor, request: OperatorCreate
) -> OperatorCreated:
    """An admin adds a member of staff; their personal token is returned once and never stored."""
    await ensure_telegram_id_free(session, telegram_user_id=request.telegram_user_id)
    now = utcnow()
    operator = Operator(
        id=new_id(),
        name=request.name,
        role=request.role,
        telegram_user_id=request.telegram_user_id,
        active=True,
        created_at=now,
    )
    token = _issue_token(operator, settings=settings, now=now)
    session.add(operator)
    await session.flush()
    await audit_operator(
        session,
        actor=actor,
        action="operator.created",
        operator=operator,
        name=operator.name,
        role=operator.role,
        telegram_user_id=operator.telegram_user_id,
    )
    return OperatorCreated(**read_operator(operator).model_dump(), token=token)


async def load_operator(session: AsyncSession, *, operator_id: str) -> Operator:
    operator = await session.get(Operator, operator_id, with_for_update=True)
    if operator is None:
        raise OperatorNotFoundError(f"No operator {operator_id}.")
    return operator


async def list_operators(*, session: AsyncSession) -> list[OperatorRead]:
    """Every operator, oldest first (the command line's view; the API pages them: :func:`operator_page`)."""
    return [read_operator(o) for o in await repository.all_operators(session)]


async def operator_page(*, session: AsyncSession, cursor: str | None, limit: int) -> OperatorPage:
    """A page of operators, oldest first."""
    rows = await repository.operator_page(session, cursor=cursor, limit=limit)
    page, next_cursor = repository.OPERATORS.cut(rows, limit=limit)
    return OperatorPage(items=[read_operator(o) for o in page], next_cursor=next_cursor)


async def get_operator(*, session: AsyncSession, operator_id: str) -> OperatorRead:
    return read_operator(await load_operator(session, operator_id=operator_id))


async def update_operator(
    *, session: AsyncSession, actor: Actor, operator_id: str, request: OperatorUpdate
) -> OperatorRead:
    """An admin renames, re-roles, (un)links or (de)activates an operator; effective on their next request."""
    operator = await load_operator(session, operator_id=operator_id)
    changes = {
        name: value
        for name, value in request.model_dump(exclude_unset=True).items()
        if value is not None or name in NULLABLE  # Telegram can be unlinked, the cap reset to the default
    }
    if "telegram_user_id" in changes:
        await ensure_telegram_id_free(
            session, telegram_user_id=changes["telegram_user_id"], operator_id=operator.id
        )
    for name, value in changes.items():
        setattr(operator, name, value)
    operator.updated_at = utcnow()
    await session.flush()
    await audit_operator(session, actor=actor, action="operator.updated", operator=operator, **changes)
    return read_operator(operator)


async def rotate_operator_token(
    *, session: AsyncSession, settings: Settings, actor: Actor, operator_id: str
) -> OperatorTokenRead:
    """A new personal token for the operator, shown once; the old one stops working at once."""
    operator = await load_operator(session, operator_id=operator_id)
    token = _issue_token(operator, settings=settings, now=utcnow())
    await session.flush()
    await audit_operator(
        session,
        actor=actor,
        action="operator.token_rotated",
        operator=operator,
        expires_at=operator.token_expires_at.isoformat() if operator.token_expires_at else None,
    )
    return OperatorTokenRead(operator_id=operator.id, token=token, expires_at=operator.token_expires_at)


async def revoke_operator_token(*, session: AsyncSession, actor: Actor, operator_id: str) -> OperatorRead:
    """The operator's personal token stops working (Telegram access, if linked, is unaffected)."""
    operator = await load_operator(session, operator_id=operator_id)
    now = utcnow()
    operator.token_revoked_at = now
    operator.updated_at = now
    await session.flush()
    await audit_operator(session, actor=actor, action="operator.token_revoked", operator=operator)
    return read_operator(operator)
