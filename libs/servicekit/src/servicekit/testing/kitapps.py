"""Small apps built with servicekit, shared by the tests and the uvicorn processes they start.

servicekit's tests import it, and start ``servicekit.testing.kitapps:peer_app`` as a uvicorn process.
Everything here uses servicekit exactly as a service would.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Query
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.apikeys import Caller, require_scope
from servicekit.app import DbSession, Runtime, create_service_app
from servicekit.db import Database, Money, new_metadata
from servicekit.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    PeerUnavailableError,
    RateLimitedError,
    ValidationFailedError,
)
from servicekit.events import events_router
from servicekit.outbox import EventEnvelope, inbox_table
from servicekit.settings import ServiceSettings
from servicekit.state import service_state
from servicekit.telemetry import add_span_processor, current_trace_id

if TYPE_CHECKING:
    from servicekit.testing import ServiceProcess

log = logging.getLogger("kitapps")


class KitSettings(ServiceSettings):
    """Settings of the test apps: a prefix of their own and no ``.env``, so nothing leaks in."""

    model_config = SettingsConfigDict(
        env_prefix="KIT_", env_file=None, extra="ignore", env_nested_delimiter="__"
    )

    service_name: str = "kit"


@dataclass(frozen=True)
class Peer:
    """The peer app running as a uvicorn process, and the keys a caller may present to it."""

    process: ServiceProcess
    key: str
    """Carries the scopes ``stock:read`` and ``events:publish``."""
    key_without_scope: str
    database: Database
    """The peer's PostgreSQL database, as the test reads it (the effects of events, the inbox)."""

    @property
    def url(self) -> str:
        return self.process.url


class StockExhaustedError(DomainError):
    """A peer's own typed error: the caller must get this very class back."""

    status = 409
    code = "kit_stock_exhausted"
    title = "The item is sold out"


# --------------------------------------------------------------------------------------------------
# The demo app: errors, API keys, the request session, telemetry, metrics (run in-process).

DEMO_SCHEMA = "kit_demo"
demo_metadata = new_metadata()
note_parent = Table("note_parent", demo_metadata, Column("id", Integer, primary_key=True))
note = Table(
    "note",
    demo_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("body", String(200), nullable=False),
    # Checked only at COMMIT: a route can flush a bad row and fail when the session commits.
    Column(
        "parent_id",
        Integer,
        ForeignKey("note_parent.id", deferrable=True, initially="DEFERRED"),
        nullable=True,
    ),
)


class Line(BaseModel):
    sku: str
    price: Decimal


class OrderCreate(BaseModel):
    amount: Decimal
    items: list[Line]


class NoteCreate(BaseModel):
    body: str
    parent_id: int | None = None


@asynccontextmanager
async def in_process_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like ``servicekit.testing.running_app``, but an unhandled error is answered (500) as uvicorn would,
    instead of being re-raised into the test."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def create_tables(database: Database, metadata: MetaData) -> None:
    """Create ``metadata``'s tables in the database's schema (created first on PostgreSQL)."""
    async with database.engine.begin() as connection:
        if database.is_postgres:
            await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
        await connection.run_sync(metadata.create_all)


async def create_demo_tables(app: FastAPI) -> None:
    """Create the demo app's tables in the app's own database."""
    await create_tables(service_state(app).runtime.database, demo_metadata)


def create_demo_app(settings: ServiceSettings, *, runtime: Runtime | None = None) -> FastAPI:
    runtime = runtime or Runtime(settings, schema=DEMO_SCHEMA)
    app = create_service_app(settings=settings, runtime=runtime, title="kit demo", description="tests")

    @app.get("/v1/items/{item_id}")
    async def get_item(item_id: str) -> dict[str, str]:
        log.info(
            "item %s looked up for jane.doe@example.com", item_id, extra={"asked_by": "jane.doe@example.com"}
        )
        if item_id == "missing":
            raise NotFoundError(f"No item {item_id}.")
        return {"item_id": item_id}

    @app.post("/v1/orders", status_code=201)
    async def create_order(order: OrderCreate) -> dict[str, str]:
        return {"amount": str(order.amount)}

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError(
            "SELECT password FROM customer WHERE email = 'jane.doe@example.com' -- internal detail"
        )

    @app.get("/v1/limited")
    async def limited() -> None:
        raise RateLimitedError("Slow down.", retry_after_seconds=7)

    @app.get("/v1/private")
    async def private(caller: Annotated[Caller, Depends(require_scope("items:read"))]) -> dict[str, str]:
        return {"caller": caller.name}

    @app.post("/v1/notes", status_code=201)
    async def add_note(body: NoteCreate, session: DbSession, fail: bool = False) -> dict[str, int]:
        note_id = await session.scalar(
            insert(note).values(body=body.body, parent_id=body.parent_id).returning(note.c.id)
        )
        if fail:
            raise ConflictError("The note conflicts with another.")
        return {"id": int(note_id or 0)}

    @app.get("/v1/notes/count")
    async def count_notes(session: DbSession) -> dict[str, int]:
        count = await session.scalar(select(func.count()).select_from(note))
        log.info("notes counted")
        return {"count": int(count or 0)}

    return app


# --------------------------------------------------------------------------------------------------
# Receiving events: POST /v1/events with an inbox, and a handler whose effect the tests can count.

PEER_SCHEMA = "kit_peer"
receiver_metadata = new_metadata()
inbox = inbox_table(receiver_metadata)
effect = Table(
    "effect",
    receiver_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Deliberately not unique: a duplicate effect must be visible, not rejected by a constraint.
    Column("event_id", String(36), nullable=False),
    Column("aggregate_id", String(64), nullable=True),
    Column("seq", Integer, nullable=True),
    Column("amount", Money, nullable=True),
)

event_posts: Counter[str] = Counter()
handler_failures: Counter[str] = Counter()


class CountEventPosts:
    """Counts every event posted, duplicates included: ``*`` one per ``POST /v1/events`` and one per event of a
    ``POST /v1/events/batch``; ``batches`` the batch requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/events":
            event_posts["*"] += 1
        elif scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/v1/events/batch":
            event_posts["batches"] += 1
            body = bytearray()

            async def counting_receive() -> Message:
                message = await receive()
                body.extend(message.get("body", b""))
                if message["type"] == "http.request" and not message.get("more_body"):
                    event_posts["*"] += len(json.loads(body).get("events", []))
                return message

            await self.app(scope, counting_receive, send)
            return
        await self.app(scope, receive, send)


async def apply_effect(session: AsyncSession, envelope: EventEnvelope) -> None:
    fail_times = int(envelope.payload.get("fail_times", 0))
    if handler_failures[envelope.id] < fail_times:
        handler_failures[envelope.id] += 1
        raise RuntimeError(f"effect of {envelope.id} failed on purpose")
    amount = envelope.payload.get("amount")
    await session.execute(
        insert(effect).values(
            event_id=envelope.id,
            aggregate_id=envelope.aggregate_id,
            seq=envelope.payload.get("seq"),
            amount=Decimal(amount) if amount is not None else None,
        )
    )


async def count_claimed(session: AsyncSession, envelope: EventEnvelope) -> None:
    """Records (as the effect's ``seq``) how many of the events listed in ``batch_ids`` the inbox holds, in
    this transaction, when this one is handled."""
    listed = [str(event_id) for event_id in envelope.payload["batch_ids"]]
    claimed = await session.scalar(
        select(func.count()).select_from(inbox).where(inbox.c.event_id.in_(listed))
    )
    await session.execute(
        insert(effect).values(event_id=envelope.id, aggregate_id=envelope.aggregate_id, seq=claimed)
    )


async def reject_event(session: AsyncSession, envelope: EventEnvelope) -> None:
    raise ValidationFailedError.for_field("payload.amount", "must be a decimal string")


# --------------------------------------------------------------------------------------------------
# The peer: what the service client talks to and the outbox relay delivers to (a uvicorn process).

calls: Counter[str] = Counter()


def peer_app() -> FastAPI:
    """The peer of the client tests and the receiver of the outbox tests (one process serves both)."""
    settings = KitSettings()
    app = create_demo_app(settings, runtime=Runtime(settings, schema=PEER_SCHEMA))
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter))
    app.add_middleware(CountEventPosts)
    app.include_router(
        events_router(
            inbox=inbox,
            handlers={
                "kit.effect": apply_effect,
                "kit.invalid": reject_event,
                "kit.count_claimed": count_claimed,
            },
        )
    )

    @app.get("/test/event-posts")
    async def posts() -> dict[str, int]:
        return {"posts": event_posts["*"], "batches": event_posts["batches"]}

    @app.get("/v1/stock/{sku}")
    async def stock(sku: str, caller: Annotated[Caller, Depends(require_scope("stock:read"))]) -> None:
        raise StockExhaustedError(f"{sku} is sold out until Monday.", extra={"sku": sku})

    async def flaky(name: str, fail: int) -> dict[str, int]:
        calls[name] += 1
        if calls[name] <= fail:
            raise PeerUnavailableError("Warming up.")
        return {"calls": calls[name]}

    @app.get("/v1/flaky/{name}")
    async def flaky_get(name: str, fail: Annotated[int, Query()] = 0) -> dict[str, int]:
        return await flaky(name, fail)

    @app.post("/v1/flaky/{name}")
    async def flaky_post(name: str, fail: Annotated[int, Query()] = 0) -> dict[str, int]:
        return await flaky(name, fail)

    @app.get("/v1/calls/{name}")
    async def call_count(name: str) -> dict[str, int]:
        return {"calls": calls[name]}

    @app.get("/v1/trace")
    async def trace_probe() -> dict[str, str | None]:
        log.info("trace probe")
        return {"trace_id": current_trace_id()}

    @app.get("/test/spans")
    async def finished_spans() -> list[dict[str, Any]]:
        return [
            {
                "name": span.name,
                "kind": span.kind.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
                "attributes": dict(span.attributes or {}),
            }
            for span in exporter.get_finished_spans()
        ]

    return app
