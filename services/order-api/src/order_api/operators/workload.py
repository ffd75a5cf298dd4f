"""Balancing the operators' workload: a cap on the orders one operator holds at once, whether they are at the
desk (presence), and what happens to their orders when they leave it for good (deactivation).

The cap is ``ORDER_API_OPERATOR_MAX_HELD_ORDERS``, or the operator's own ``max_held_orders``. It is checked
with the operator's row locked (``repository.operator_locked``), so two takes by one operator at once are
counted one after the other: at one below the cap exactly one succeeds. Every path that gives an operator an
order (take, reassignment) locks the operator before the order, so they cannot deadlock each other.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.operators import repository
from order_api.operators.errors import (
    OperatorAtCapacityError,
    OperatorForbiddenError,
    OperatorInactiveError,
    OperatorNotFoundError,
)
from order_api.operators.models import Operator
from order_api.operators.schemas import OperatorRead, OperatorUpdate, PresenceName, PresenceRead
from order_api.operators.service import OperatorPrincipal, audit_operator, update_operator
from order_api.orders.lifecycle import Actor, give_back
from order_api.orders.models import Order
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import utcnow
from servicekit.errors import ValidationFailedError
from servicekit.plurals import english


def cap_of(settings: Settings, operator: Operator) -> int:
    """How many orders ``operator`` may hold at once."""
    return operator.max_held_orders or settings.operator_max_held_orders


async def locked_operator(session: AsyncSession, *, operator_id: str) -> Operator:
    operator = await repository.operator_locked(session, operator_id=operator_id)
    if operator is None:
        raise OperatorNotFoundError(f"No operator {operator_id}.", extra={"operator_id": operator_id})
    return operator


async def active_operator_locked(session: AsyncSession, *, operator_id: str) -> Operator:
    """The operator about to be handed an order, locked and still active: a deactivation that committed while
    this request waited for the lock has returned their orders, and they take no more."""
    operator = await locked_operator(session, operator_id=operator_id)
    if not operator.active:
        raise OperatorInactiveError(f"{operator.name} is deactivated.", extra={"operator_id": operator.id})
    return operator


async def room_for_one_more(session: AsyncSession, *, settings: Settings, operator: Operator) -> bool:
    """Whether ``operator`` (locked by the caller) may hold one more order."""
    return await repository.held_count(session, operator_id=operator.id) < cap_of(settings, operator)


async def at_capacity(
    session: AsyncSession, *, settings: Settings, operator: Operator
) -> OperatorAtCapacityError:
    """The refusal for ``operator`` (locked by the caller), naming the cap."""
    held = await repository.held_count(session, operator_id=operator.id)
    cap = cap_of(settings, operator)
    return OperatorAtCapacityError(
        f"{operator.name} already holds {english(held, 'order')} (the cap is {cap}): finish or give one "
        "back first.",
        extra={"operator_id": operator.id, "held_orders": held, "max_held_orders": cap},
    )


async def operator_named(session: AsyncSession, *, operator_id: str | None, name: str | None) -> str:
    """The id of the operator named by id, or by the name of exactly one active operator."""
    if operator_id is not None:
        return operator_id
    found = await repository.active_operator_ids_named(session, name=name or "")
    if not found:
        raise OperatorNotFoundError(f"No active operator is called {name}.", extra={"operator_name": name})
    if len(found) > 1:
        raise ValidationFailedError.for_field(
            "operator_name", f"More than one active operator is called {name}; name them by operator_id."
        )
    return found[0]


def deposit_deadline(settings: Settings, order: Order) -> datetime:
    """When an order handed back to the pool expires unless paid: a full deposit window from now."""
    rules = settings.currencies.get(order.from_currency)
    if rules is None:
        return order.expires_at or utcnow()
    return utcnow() + timedelta(minutes=rules.awaiting_deposit_minutes)


# -- presence -----------------------------------------------------------------------------------------------


def _own_operator_id(principal: OperatorPrincipal) -> str:
    if principal.operator_id is None:
        raise OperatorForbiddenError("The admin key is no operator account and has no presence.")
    return principal.operator_id


async def _presence(session: AsyncSession, *, settings: Settings, operator: Operator) -> PresenceRead:
    return PresenceRead(
        operator_id=operator.id,
        name=operator.name,
        status=cast(PresenceName, operator.presence),
        since=operator.presence_since,
        held_orders=await repository.held_count(session, operator_id=operator.id),
        max_held_orders=cap_of(settings, operator),
    )


async def read_presence(
    *, session: AsyncSession, settings: Settings, principal: OperatorPrincipal
) -> PresenceRead:
    """Whether I am at the desk, since when, and my load against my cap."""
    operator_id = _own_operator_id(principal)
    operator = await session.get(Operator, operator_id)
    if operator is None:  # pragma: no cover - the principal was just read from this table
        raise OperatorNotFoundError(f"No operator {operator_id}.")
    return await _presence(session, settings=settings, operator=operator)


async def set_presence(
    *, session: AsyncSession, settings: Settings, principal: OperatorPrincipal, status: PresenceName
) -> PresenceRead:
    """Mark myself available or away (recorded with the time, and audited when it changes). Away, I keep
    and drive the orders I hold."""
    operator = await locked_operator(session, operator_id=_own_operator_id(principal))
    if operator.presence != status:
        now = utcnow()
        previous = operator.presence
        operator.presence, operator.presence_since, operator.updated_at = status, now, now
        await session.flush()
        await audit_operator(
            session,
            actor=principal.actor,
            action="operator.presence_changed",
            operator=operator,
            presence=status,
            previous=previous,
        )
    return await _presence(session, settings=settings, operator=operator)


# -- deactivation -------------------------------------------------------------------------------------------


async def return_held_orders(
    session: AsyncSession,
    *,
    settings: Settings,
    protection: DataProtection,
    operator: Operator,
    actor: Actor,
) -> int:
    """Give every order ``operator`` holds back to the pool, announced as a release by ``actor``."""
    orders = await repository.held_orders_locked(session, operator_id=operator.id)
    for order in orders:
        await give_back(
            session,
            protection=protection,
            order=order,
            actor=actor,
            expires_at=deposit_deadline(settings, order),
            comment=f"Back in the pool: {operator.name} was deactivated.",
        )
    return len(orders)


async def change_operator(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    actor: Actor,
    operator_id: str,
    request: OperatorUpdate,
) -> OperatorRead:
    """An admin changes an operator (``service.update_operator``); deactivating one returns the orders they
    hold to the pool in the same transaction, so none stays held by someone who can no longer act."""
    operator = await locked_operator(session, operator_id=operator_id)
    was_active = operator.active
    changed = await update_operator(session=session, actor=actor, operator_id=operator_id, request=request)
    if was_active and not operator.active:
        await return_held_orders(
            session, settings=settings, protection=protection, operator=operator, actor=actor
        )
    return changed
