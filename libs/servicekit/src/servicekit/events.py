"""``POST /v1/events``: how a service receives its peers' events, exactly once in effect."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import problem_responses
from servicekit.outbox import EventEnvelope, EventReceipt, accept_once

log = logging.getLogger("servicekit.events")

EventHandler = Callable[[AsyncSession, EventEnvelope], Awaitable[None]]


def events_router(
    *, inbox: Table, handlers: Mapping[str, EventHandler], scope: str = "events:publish"
) -> APIRouter:
    """A router whose ``POST /v1/events`` records each event id in ``inbox`` and runs its handler in the
    same transaction: a redelivered event is acknowledged and changes nothing; an event type this service
    does not handle is acknowledged and ignored, so publishers can add types without breaking receivers."""
    router = APIRouter(prefix="/v1/events", tags=["events"])

    @router.post(
        "",
        summary="Receive a domain event from a peer service",
        response_model=EventReceipt,
        responses=problem_responses(401, 403, 422),
    )
    async def receive_event(
        envelope: EventEnvelope,
        session: DbSession,
        caller: Annotated[Caller, Depends(require_scope(scope))],
    ) -> EventReceipt:
        if not await accept_once(session, inbox, envelope):
            log.info("duplicate event ignored", extra={"event_id": envelope.id, "event_type": envelope.type})
            return EventReceipt(event_id=envelope.id, status="duplicate")
        handler = handlers.get(envelope.type)
        if handler is None:
            return EventReceipt(event_id=envelope.id, status="ignored")
        await handler(session, envelope)
        log.info(
            "event processed",
            extra={"event_id": envelope.id, "event_type": envelope.type, "source": caller.name},
        )
        return EventReceipt(event_id=envelope.id, status="processed")

    return router
