"""``/v1/admin/outbox`` (servicekit's, behind order-api's admins) and ``python -m order_api outbox replay``:
every replay of a dead-lettered event is in the audit trail (``outbox.event_replayed``)."""

from __future__ import annotations

import getpass

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.audit.service import AuditedActor, append_audit
from order_api.db import outbox
from order_api.operators.dependencies import admin_staff
from order_api.operators.service import OperatorPrincipal
from order_api.orders.lifecycle import Actor
from servicekit.outbox_admin import OutboxEventRead, outbox_admin_router

OUTBOX_EVENT_REPLAYED = "outbox.event_replayed"


async def audit_replay(session: AsyncSession, *, actor: AuditedActor, event: OutboxEventRead) -> None:
    await append_audit(
        session,
        actor=actor,
        action=OUTBOX_EVENT_REPLAYED,
        target_type="outbox_event",
        target_id=event.id,
        parameters={
            "event_type": event.event_type,
            "destination": event.destination,
            "aggregate_id": event.aggregate_id,
        },
    )


async def _audit_admin_replay(
    session: AsyncSession, admin: OperatorPrincipal, event: OutboxEventRead
) -> None:
    await audit_replay(session, actor=admin.actor, event=event)


async def audit_cli_replay(session: AsyncSession, event: OutboxEventRead) -> None:
    await audit_replay(
        session, actor=Actor(kind="cli", id=getpass.getuser(), channel="cli", role="admin"), event=event
    )


router: APIRouter = outbox_admin_router(
    table=outbox,
    guard=admin_staff,
    who="Admins only (the admin API key or an admin's personal token); every replay is audited "
    "(`outbox.event_replayed`)",
    on_replay=_audit_admin_replay,
)
