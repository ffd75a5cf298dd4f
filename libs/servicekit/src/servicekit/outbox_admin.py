"""Operators list and replay a service's outbox events: ``GET /v1/admin/outbox``,
``POST /v1/admin/outbox/{id}/replay`` (:func:`outbox_admin_router`, mounted by every service with an outbox
behind its own admin guard) and the same from the service's command line (``python -m <service> outbox …``,
:func:`add_outbox_commands`). An event is shown by its envelope and delivery state, never its payload (which
may carry a customer's sealed data).
"""

# No ``from __future__ import annotations``: the routes' annotations name the guard given to the factory, which
# FastAPI must see as a value, not as a string it would look up in this module.
import argparse
import enum
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, Row, Table, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.errors import ErrorCode
from servicekit.app import DbSession
from servicekit.db import Database, utcnow
from servicekit.errors import ConflictError, NotFoundError, problem_responses
from servicekit.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, CursorParam, Keyset, LimitParam, Page
from servicekit.telemetry import mask_secrets
from servicekit.workers import wake_after_commit

OUTBOX_ADMIN_SCOPE = "outbox:admin"
"""The API-key scope that lists and replays the outbox of a service without staff accounts."""


class OutboxEventStatus(enum.StrEnum):
    pending = "pending"
    dead = "dead"
    delivered = "delivered"


class OutboxEventRead(BaseModel):
    """An outbox event as operators see it: where it goes and how its delivery went, not what it says."""

    id: str
    event_type: str
    aggregate_id: str | None
    destination: str
    status: OutboxEventStatus = Field(
        description="`pending` (to be delivered, maybe after a retry delay), `dead` (dead-lettered: replay "
        "it), `delivered`."
    )
    attempts: int
    last_error: str | None = Field(description="Why the last attempt failed (addresses and keys masked).")
    created_at: datetime
    available_at: datetime = Field(description="Not tried before this time (a retry delay or a lease).")
    delivered_at: datetime | None
    dead_at: datetime | None


class OutboxEventPage(Page[OutboxEventRead]):
    """Outbox events, newest first."""


class OutboxEventNotFoundError(NotFoundError):
    code = ErrorCode.OUTBOX_EVENT_NOT_FOUND
    title = "No such outbox event"


class OutboxEventNotReplayableError(ConflictError):
    code = ErrorCode.OUTBOX_EVENT_NOT_REPLAYABLE
    title = "Only a dead-lettered event can be replayed"


def _status_is(table: Table, status: OutboxEventStatus) -> ColumnElement[bool]:
    t = table
    if status is OutboxEventStatus.dead:
        return t.c.dead_at.is_not(None)
    if status is OutboxEventStatus.delivered:
        return t.c.delivered_at.is_not(None)
    return and_(t.c.delivered_at.is_(None), t.c.dead_at.is_(None))


def _read(row: Row[Any]) -> OutboxEventRead:
    status = (
        OutboxEventStatus.delivered
        if row.delivered_at is not None
        else OutboxEventStatus.dead
        if row.dead_at is not None
        else OutboxEventStatus.pending
    )
    return OutboxEventRead(
        id=row.id,
        event_type=row.event_type,
        aggregate_id=row.aggregate_id,
        destination=row.destination,
        status=status,
        attempts=row.attempts,
        last_error=mask_secrets(row.last_error) if row.last_error else None,
        created_at=row.created_at,
        available_at=row.available_at,
        delivered_at=row.delivered_at,
        dead_at=row.dead_at,
    )


def _columns(table: Table) -> list[Any]:
    return [c for c in table.c if c.name not in ("payload", "traceparent")]


async def list_outbox_events(
    *,
    session: AsyncSession,
    table: Table,
    status: OutboxEventStatus | None = None,
    event_type: str | None = None,
    aggregate_id: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_PAGE_SIZE,
) -> OutboxEventPage:
    """Newest first, a page at a time."""
    t = table
    query = select(*_columns(t))
    if status is not None:
        query = query.where(_status_is(t, status))
    if event_type is not None:
        query = query.where(t.c.event_type == event_type)
    if aggregate_id is not None:
        query = query.where(t.c.aggregate_id == aggregate_id)
    newest_first = Keyset("outbox", t.c.created_at, t.c.id, newest_first=True)
    rows = (await session.execute(newest_first.select(query, cursor=cursor, limit=limit))).all()
    page, next_cursor = newest_first.cut(rows, limit=limit)
    return OutboxEventPage(items=[_read(row) for row in page], next_cursor=next_cursor)


async def replay_outbox_event(*, session: AsyncSession, table: Table, event_id: str) -> OutboxEventRead:
    """A dead-lettered event goes back to pending, due now, with a fresh attempt budget (its last error is
    kept until the next attempt). The relay is woken after the commit. ``409`` for a pending or delivered
    event (one conditional update: of two replays at once, one wins), ``404`` for an unknown id."""
    t = table
    replayed = (
        await session.execute(
            update(t)
            .where(t.c.id == event_id, t.c.dead_at.is_not(None), t.c.delivered_at.is_(None))
            .values(dead_at=None, attempts=0, available_at=utcnow())
            .returning(*_columns(t))
        )
    ).first()
    if replayed is not None:
        wake_after_commit(session)
        return _read(replayed)
    found = (await session.execute(select(*_columns(t)).where(t.c.id == event_id))).first()
    if found is None:
        raise OutboxEventNotFoundError(f"No outbox event {event_id}.")
    event = _read(found)
    raise OutboxEventNotReplayableError(
        f"Outbox event {event_id} is {event.status}: only a dead-lettered event can be replayed.",
        extra={"status": event.status.value},
    )


ReplayAudit = Callable[[AsyncSession, Any, OutboxEventRead], Awaitable[None]]
"""Called in the replay's transaction with the admin the guard returned and the replayed event (an audit)."""


def outbox_admin_router(
    *, table: Table, guard: Callable[..., Any], who: str, on_replay: ReplayAudit | None = None
) -> APIRouter:
    """``/v1/admin/outbox`` of a service, behind ``guard`` (a dependency admitting its admins; ``who`` says
    whom, for the API documentation)."""
    router = APIRouter(prefix="/v1/admin/outbox", tags=["admin"])
    Admin = Annotated[Any, Depends(guard)]

    @router.get(
        "",
        operation_id="listOutboxEvents",
        response_model=OutboxEventPage,
        summary="List outbox events",
        description="The events this service has written for its peers, newest first, filtered by status "
        "(`dead`: dead-lettered, to replay), event type and aggregate (an order id); cursor pagination: pass "
        "`next_cursor` back as `cursor`. Envelope and delivery state only, never the payload. "
        f"{who}.",
        responses=problem_responses(401, 403, 422),
    )
    async def list_events(
        session: DbSession,
        _admin: Admin,
        event_status: Annotated[OutboxEventStatus | None, Query(alias="status")] = None,
        event_type: Annotated[str | None, Query(max_length=100)] = None,
        aggregate_id: Annotated[str | None, Query(max_length=64)] = None,
        cursor: CursorParam = None,
        limit: LimitParam = DEFAULT_PAGE_SIZE,
    ) -> OutboxEventPage:
        return await list_outbox_events(
            session=session,
            table=table,
            status=event_status,
            event_type=event_type,
            aggregate_id=aggregate_id,
            cursor=cursor,
            limit=limit,
        )

    @router.post(
        "/{event_id}/replay",
        operation_id="replayOutboxEvent",
        response_model=OutboxEventRead,
        summary="Replay a dead-lettered outbox event",
        description="Puts a dead-lettered event back in the queue, due now, with a fresh attempt budget; the "
        "receiver's inbox drops it if it had been processed after all. Later events about the same aggregate "
        "were not held back while it was dead, so it may arrive after them. "
        "`409 outbox_event_not_replayable` for a "
        f"pending or delivered event, `404` for an unknown id. {who}.",
        responses=problem_responses(401, 403, 404, 409),
    )
    async def replay_event(
        session: DbSession,
        admin: Admin,
        event_id: Annotated[str, Path(max_length=36, description="The event's id.")],
    ) -> OutboxEventRead:
        event = await replay_outbox_event(session=session, table=table, event_id=event_id)
        if on_replay is not None:
            await on_replay(session, admin, event)
        return event

    return router


# --- the command line ------------------------------------------------------------------------------------

CliReplayAudit = Callable[[AsyncSession, OutboxEventRead], Awaitable[None]]


def _page_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_PAGE_SIZE}, got {value}")
    return value


def add_outbox_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``outbox list [--status dead] [--event-type T] [--aggregate-id ID] [--limit N] [--cursor C]`` and
    ``outbox replay ID`` on a service's command line (run with :func:`run_outbox_command`)."""
    outbox = commands.add_parser("outbox", help="list or replay this service's outbox events")
    actions = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = actions.add_parser("list", help="print events, newest first, one JSON object a line")
    listing.add_argument("--status", choices=[s.value for s in OutboxEventStatus], default=None)
    listing.add_argument("--event-type", default=None)
    listing.add_argument("--aggregate-id", default=None)
    listing.add_argument(
        "--limit", type=_page_size, default=DEFAULT_PAGE_SIZE, metavar="N", help=f"1 to {MAX_PAGE_SIZE}"
    )
    listing.add_argument("--cursor", default=None, help="the next page (printed after a full page)")
    replay = actions.add_parser("replay", help="put a dead-lettered event back in the queue")
    replay.add_argument("event_id", metavar="ID")


async def run_outbox_command(
    args: argparse.Namespace, *, database: Database, table: Table, on_replay: CliReplayAudit | None = None
) -> int:
    """Run ``outbox list`` or ``outbox replay`` on ``database``; returns the exit code (a refused replay
    raises its domain error, which the service's command line reports)."""
    if args.outbox_command == "list":
        async with database.sessionmaker() as session:
            page = await list_outbox_events(
                session=session,
                table=table,
                status=OutboxEventStatus(args.status) if args.status else None,
                event_type=args.event_type,
                aggregate_id=args.aggregate_id,
                cursor=args.cursor,
                limit=args.limit,
            )
        for item in page.items:
            print(json.dumps(item.model_dump(mode="json")))
        if page.next_cursor:
            print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
        return 0
    async with database.sessionmaker.begin() as session:
        event = await replay_outbox_event(session=session, table=table, event_id=args.event_id)
        if on_replay is not None:
            await on_replay(session, event)
    print(f"replayed {event.id}: {event.event_type} for {event.destination} is pending again")
    return 0
