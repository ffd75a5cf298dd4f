"""``POST /v1/events`` and ``POST /v1/events/batch``: how a service receives its peers' events, exactly once
in effect."""

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends
from opentelemetry import trace
from pydantic import BaseModel, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession
from servicekit.errors import ValidationFailedError, problem_responses
from servicekit.openapi import INTERNAL
from servicekit.outbox import EventBatch, EventBatchReceipt, EventEnvelope, EventReceipt, accept_once
from servicekit.telemetry import context_from_traceparent

log = logging.getLogger("servicekit.events")
tracer = trace.get_tracer("servicekit.events")

EventHandler = Callable[[AsyncSession, EventEnvelope], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)


def read_payload(model: type[M], envelope: EventEnvelope) -> M:
    """``envelope``'s payload read into ``model``: a payload that can never be read is a 422 naming each bad
    ``payload.<field>``, which the publisher's outbox relay dead-letters instead of retrying. Every handler
    reads its payload through a model, so no event is a 500."""
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(["payload", *(str(part) for part in error["loc"])]),
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        raise ValidationFailedError(f"{envelope.type} payload: {fields}", errors=errors) from exc


def events_router(
    *, inbox: Table, handlers: Mapping[str, EventHandler], scope: str = "events:publish"
) -> APIRouter:
    """A router whose ``POST /v1/events`` records each event id in ``inbox`` and runs its handler in the
    same transaction: a redelivered event is acknowledged and changes nothing; an event type this service
    does not handle is acknowledged and ignored, so publishers can add types without breaking receivers.
    ``POST /v1/events/batch`` does the same for several events in one transaction (all or nothing)."""
    router = APIRouter(prefix="/v1/events", tags=["events"])
    CanPublish = Annotated[Caller, Depends(require_scope(scope))]

    async def receive(
        session: AsyncSession, envelope: EventEnvelope, caller: Caller, *, first_time: bool | None = None
    ) -> EventReceipt:
        """Handle ``envelope`` once; ``first_time``: whether its inbox row was just written (``None``: write
        it now)."""
        if first_time is None:
            first_time = await accept_once(session, inbox, envelope)
        if not first_time:
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

    @router.post(
        "",
        operation_id="receiveEvent",
        openapi_extra=INTERNAL,
        summary="Receive a domain event from a peer service",
        response_model=EventReceipt,
        responses=problem_responses(401, 403, 422),
    )
    async def receive_event(envelope: EventEnvelope, session: DbSession, caller: CanPublish) -> EventReceipt:
        return await receive(session, envelope, caller)

    @router.post(
        "/batch",
        operation_id="receiveEventBatch",
        openapi_extra=INTERNAL,
        summary="Receive several domain events from a peer service at once",
        description="The events are handled in the order given, in one transaction: every one is applied or "
        "none is (an error answers as `POST /v1/events` would for the event that caused it). Each event is "
        "handled in the trace of its `traceparent`. Publishers send one event at a time to find which one "
        "a failing batch stumbled on.",
        response_model=EventBatchReceipt,
        responses=problem_responses(401, 403, 422),
    )
    async def receive_events(batch: EventBatch, session: DbSession, caller: CanPublish) -> EventBatchReceipt:
        # Every event's inbox row first, in id order, then the handlers. Were each written just before its
        # handler, a batch could hold a lock taken by an earlier event's handler (a pool's) while it waits for
        # a later event's inbox row, written by the same event delivered alone (a relay that gave up on the
        # batch, another replica) and waiting for that lock: a deadlock. This way a batch waits for a row
        # before it holds anything a handler takes.
        new: set[str] = set()
        for envelope in sorted(batch.events, key=lambda e: e.id):
            if envelope.id not in new and await accept_once(session, inbox, envelope):
                new.add(envelope.id)
        receipts = []
        for envelope in batch.events:
            first_time = envelope.id in new
            new.discard(envelope.id)
            with tracer.start_as_current_span(
                f"event {envelope.type}",
                context=context_from_traceparent(envelope.traceparent),
                kind=trace.SpanKind.CONSUMER,
                attributes={"messaging.message.id": envelope.id, "messaging.source.name": envelope.source},
            ):
                receipts.append(await receive(session, envelope, caller, first_time=first_time))
        return EventBatchReceipt(receipts=receipts)

    return router
