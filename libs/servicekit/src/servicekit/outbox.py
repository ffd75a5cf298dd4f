"""The transactional outbox and the inbox.

A service writes an event with :func:`add_event` in the same transaction as the state change it announces,
so both happen or neither does. :class:`OutboxRelay`, a background task, claims due events, POSTs each to
its destination's ``/v1/events`` and marks it delivered. A failed delivery is retried with exponential
backoff and jitter, and dead-lettered after ``max_attempts``. Claims are leases: the row's
``available_at`` is pushed ahead before delivery, so a relay that crashes mid-delivery leaves the event to
be claimed again when the lease runs out (at-least-once); on PostgreSQL the claim uses
``FOR UPDATE SKIP LOCKED`` so any number of replicas relay side by side. Events about one aggregate (an
order) are delivered in the order they were written: a later one waits while an earlier one is pending.

Every event stores the ``traceparent`` of the transaction that wrote it; delivery continues that trace, so a
retry hours later is still part of the order's story. Receivers record event ids in their inbox
(:func:`accept_once`) in the same transaction as the processing, so a redelivery changes nothing.

An outbox is operated through its figures (:func:`outbox_gauges` and :class:`OutboxMetrics` on ``/metrics``),
its admin routes and command line (``servicekit.outbox_admin``: list, replay a dead-lettered event), and
:func:`report_dead_letters`, which tells the notifier when events are dead-lettered so that the operators
get an alert.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as MetricCounter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    event,
    exists,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from desk_contracts.events import DeadEvents, Event, OutboxDeadCleared, OutboxDeadLettered
from servicekit.backing import outlasting_outages
from servicekit.db import RUNTIME_OWNS, RUNTIME_PRIVILEGES, Database, UtcDateTime, try_insert, utcnow
from servicekit.metrics import QueueFigures, QueueGauges, queue_figures
from servicekit.retention import RetentionRule
from servicekit.settings import OUTBOX_LEASE_SECONDS
from servicekit.telemetry import context_from_traceparent, current_traceparent, traceparent_of
from servicekit.workers import WAKE_AFTER_COMMIT, QueueWorker, backoff_delay, wake_after_commit

log = logging.getLogger("servicekit.outbox")
tracer = trace.get_tracer("servicekit.outbox")


def outbox_table(metadata: MetaData) -> Table:
    """The ``outbox`` table in a service's metadata (its migrations create it in the service's schema)."""
    table = Table(
        "outbox",
        metadata,
        Column("id", String(36), primary_key=True, comment="The event id receivers deduplicate by."),
        Column("destination", String(64), nullable=False, comment="Peer service the event is for."),
        Column("event_type", String(100), nullable=False),
        Column(
            "aggregate_id", String(64), nullable=True, comment="Events of one aggregate keep their order."
        ),
        Column("payload", JSON, nullable=False),
        Column("traceparent", String(64), nullable=True),
        Column("created_at", UtcDateTime, nullable=False),
        Column("available_at", UtcDateTime, nullable=False, comment="Not claimed before this time."),
        Column("attempts", Integer, nullable=False, default=0),
        Column("delivered_at", UtcDateTime, nullable=True),
        Column("dead_at", UtcDateTime, nullable=True, comment="Dead-lettered: gave up after max attempts."),
        Column("last_error", Text, nullable=True),
        # The service vacuums its outbox itself (servicekit.maintenance), which PostgreSQL lets only the owner do.
        info={RUNTIME_PRIVILEGES: RUNTIME_OWNS},
    )
    pending = and_(table.c.delivered_at.is_(None), table.c.dead_at.is_(None))
    # The relay walks pending events oldest first (``OutboxRelay.claim``): this index hands it the head of the
    # queue without sorting every pending row. ``available_at`` is not indexed, so a lease is a HOT update.
    Index("ix_outbox_pending", table.c.created_at, table.c.id, postgresql_where=pending, sqlite_where=pending)
    Index("ix_outbox_aggregate", table.c.destination, table.c.aggregate_id, table.c.created_at)
    # Dead-lettered events, newest first (``GET /v1/admin/outbox?status=dead``) and counted for the metrics and
    # the dead-letter alert: a handful of rows, so the index costs nothing on the hot path.
    dead = table.c.dead_at.is_not(None)
    Index("ix_outbox_dead", table.c.created_at, table.c.id, postgresql_where=dead, sqlite_where=dead)
    return table


def inbox_table(metadata: MetaData) -> Table:
    """The ``inbox`` table: ids of events already processed."""
    return Table(
        "inbox",
        metadata,
        Column("event_id", String(36), primary_key=True),
        Column("event_type", String(100), nullable=False),
        Column("source", String(64), nullable=False),
        Column("received_at", UtcDateTime, nullable=False),
    )


def delivered_events(table: Table, *, keep: timedelta) -> RetentionRule:
    """Retention of an outbox: events delivered longer than ``keep`` ago. Pending events and dead-lettered
    ones (``delivered_at`` is NULL: an operator's to replay) are never touched."""
    return RetentionRule(
        name=f"{table.name} delivered",
        table=table,
        timestamp=table.c.delivered_at,
        keep=keep,
        finished=table.c.delivered_at.is_not(None),
    )


def processed_events(table: Table, *, keep: timedelta) -> RetentionRule:
    """Retention of an inbox: ids of events received longer than ``keep`` ago. An id may be forgotten only
    once its sender can no longer deliver the event again (``ServiceSettings.inbox_retention_days``)."""
    return RetentionRule(
        name=f"{table.name} processed", table=table, timestamp=table.c.received_at, keep=keep
    )


EXAMPLE_ENVELOPE: dict[str, Any] = {
    "id": "0b6f7c1e-5a1d-4f7e-9c2b-7d3e8a9f1c20",
    "type": "wallet.assigned",
    "source": "wallet-pool",
    "occurred_at": "2026-05-04T10:15:00Z",
    "aggregate_id": "5f0c6a8e-3b7d-4c1e-9a44-0d2f5b9e7c11",
    "payload": {"order_id": "5f0c6a8e-3b7d-4c1e-9a44-0d2f5b9e7c11", "address": "bc1qexampleaddress"},
}


class EventEnvelope(BaseModel):
    """What travels between services: a domain event with its identity and origin."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_ENVELOPE]})

    # Lengths as the outbox and the inbox store them.
    id: str = Field(
        min_length=1, max_length=36, description="Unique event id; receivers ignore an id they have seen."
    )
    type: str = Field(min_length=1, max_length=100, examples=["wallet.assigned"])
    source: str = Field(min_length=1, max_length=64, examples=["wallet-pool"])
    occurred_at: datetime
    aggregate_id: str | None = Field(default=None, max_length=64)
    payload: dict[str, Any]
    traceparent: str | None = Field(
        default=None,
        max_length=64,
        description="W3C trace context the event is handled in, when it travels in a batch (one request, many "
        "traces); a single event's request carries it as its `traceparent` header instead.",
    )


class EventReceipt(BaseModel):
    event_id: str
    status: str = Field(description="processed | duplicate | ignored")


MAX_BATCH_EVENTS = 100


class EventBatch(BaseModel):
    """Several events for one receiver, in the order they are to be handled."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"events": [EXAMPLE_ENVELOPE]}]})

    events: list[EventEnvelope] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class EventBatchReceipt(BaseModel):
    receipts: list[EventReceipt] = Field(description="One per event, in the order sent.")


async def add_event(
    session: AsyncSession,
    table: Table,
    *,
    destination: str,
    event_type: str,
    payload: Mapping[str, Any],
    aggregate_id: str | None = None,
) -> str:
    """Write an event in the caller's transaction; returns its id. The relay is woken after the commit."""
    event_id = str(uuid.uuid4())
    now = utcnow()
    await session.execute(
        table.insert().values(
            id=event_id,
            destination=destination,
            event_type=event_type,
            aggregate_id=aggregate_id,
            payload=dict(payload),
            traceparent=current_traceparent(),
            created_at=now,
            available_at=now,
            attempts=0,
        )
    )
    wake_after_commit(session)
    return event_id


async def publish(
    session: AsyncSession, table: Table, *, destination: str, event: Event, aggregate_id: str | None = None
) -> str:
    """Write ``event`` (a ``desk_contracts.events`` model) to the outbox in the caller's transaction: its type
    and its payload as the model writes it, so what travels is what the consumer's model reads."""
    return await add_event(
        session,
        table,
        destination=destination,
        event_type=event.event_type,
        payload=event.payload(),
        aggregate_id=aggregate_id,
    )


@event.listens_for(Session, "after_commit")
def _wake_workers(session: Session) -> None:
    if session.info.pop(WAKE_AFTER_COMMIT, None):
        for listener in session.info.get("after_commit_listeners", ()):
            listener()


@event.listens_for(Session, "after_rollback")
def _forget_wake(session: Session) -> None:
    session.info.pop(WAKE_AFTER_COMMIT, None)


async def accept_once(session: AsyncSession, table: Table, envelope: EventEnvelope) -> bool:
    """Record ``envelope`` in the inbox; ``False`` when it was seen before (then do nothing with it)."""
    seen = {
        "event_id": envelope.id,
        "event_type": envelope.type,
        "source": envelope.source,
        "received_at": utcnow(),
    }
    return await try_insert(session, table, seen, conflict=["event_id"])


REDACT_AFTER_DELIVERY = "_redact_after_delivery"


def redacted(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` with the fields it lists under ``_redact_after_delivery`` masked.

    Secrets a peer must receive (a one-time code, the address to send it to) travel sealed
    (``servicekit.sealing``: the ``sealed`` field), and even that sealed copy is kept in the outbox only until
    it is delivered.
    """
    fields = set(payload.get(REDACT_AFTER_DELIVERY) or ())
    return {k: ("***" if k in fields else v) for k, v in payload.items()}


def without_personal_data(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` without the fields it lists under ``_redact_after_delivery`` (and without the list): what
    stays of an undelivered event about someone who was erased. Its receiver then has nobody to tell."""
    fields = set(payload.get(REDACT_AFTER_DELIVERY) or ())
    return {k: v for k, v in payload.items() if k not in fields and k != REDACT_AFTER_DELIVERY}


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: str
    destination: str
    event_type: str
    aggregate_id: str | None
    payload: dict[str, Any]
    traceparent: str | None
    created_at: datetime
    attempts: int
    claimed_at: float | None = None
    """When this relay leased it (``time.monotonic()``): its lease ends ``lease_seconds`` later."""

    def envelope(self, source: str, *, traceparent: str | None = None) -> EventEnvelope:
        return EventEnvelope(
            id=self.id,
            type=self.event_type,
            source=source,
            occurred_at=self.created_at,
            aggregate_id=self.aggregate_id,
            payload=self.payload,
            traceparent=traceparent,
        )


@dataclass(frozen=True, slots=True)
class BatchedEvent:
    """An event travelling in a batch, with the trace context its receiver handles it in."""

    event: OutboxEvent
    traceparent: str | None


class PermanentDeliveryError(Exception):
    """The destination rejected the event in a way no retry can fix: dead-letter it at once."""


class OutboxMetrics:
    """The relay's counters (the gauges of what its outbox holds are ``servicekit.outbox_operations``')."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = MetricCounter(
            "outbox_deliveries_total",
            "Outbox events delivered, by destination and event type",
            ["destination", "event_type"],
            registry=registry,
        )
        self.failures = MetricCounter(
            "outbox_delivery_failures_total",
            "Failed outbox deliveries by destination, event type and outcome (retry: tried again later; dead: "
            "dead-lettered)",
            ["destination", "event_type", "outcome"],
            registry=registry,
        )


Deliver = Callable[[OutboxEvent], Awaitable[None]]
DeliverBatch = Callable[[str, list[BatchedEvent]], Awaitable[set[str]]]
"""Deliver events to one destination in one request; returns the ids it acknowledged (raises when the whole
batch failed)."""


class OutboxRelay(QueueWorker):
    """Delivers a service's outbox. ``deliver`` raises to signal failure.

    With ``deliver_batch``, the events a claim holds for one destination travel in one request when there
    are several (``POST /v1/events/batch``), and a woken relay lingers ``linger_seconds`` first so that a
    busy service's events gather into batches: one request, one claim and one marking per batch rather than
    per event is most of the relay's cost. A batch that fails as a whole is delivered again one event at a
    time at once, which isolates an event its receiver refuses and records each failure as usual.
    """

    def __init__(
        self,
        *,
        database: Database,
        table: Table,
        deliver: Deliver,
        deliver_batch: DeliverBatch | None = None,
        batch_size: int = 50,
        max_attempts: int = 12,
        backoff_base_seconds: float = 0.5,
        backoff_max_seconds: float = 300.0,
        poll_seconds: float = 0.5,
        lease_seconds: float = OUTBOX_LEASE_SECONDS,
        linger_seconds: float = 0.0,
        metrics: OutboxMetrics | None = None,
        gauges: QueueGauges | None = None,
    ) -> None:
        """``metrics`` count deliveries and failures; ``gauges`` count the events being delivered."""
        super().__init__(
            name="outbox-relay", database=database, poll_seconds=poll_seconds, batch_size=batch_size
        )
        self.database = database
        self.table = table
        self.deliver = deliver
        self.deliver_batch = deliver_batch
        self.linger_seconds = linger_seconds
        self.max_attempts = max_attempts
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self.gauges = gauges

    def backoff(self, attempts: int) -> timedelta:
        return backoff_delay(
            attempts, base_seconds=self.backoff_base_seconds, max_seconds=self.backoff_max_seconds
        )

    async def claim(self) -> list[OutboxEvent]:
        """Lease up to ``batch_size`` due events, oldest first, skipping rows another relay holds.

        The queue is read from its head a page at a time (``page_size`` due events in ``created_at, id``
        order, straight off ``ix_outbox_pending``); an event of the page is blocked while an earlier event of
        its aggregate is pending (one probe of ``ix_outbox_aggregate`` per event of the page, never a join
        against the whole backlog); the others are leased under ``FOR UPDATE SKIP LOCKED``, each rechecked as
        still due once locked, so two relays never lease one event. A claim costs the pages it reads, however
        long the backlog. A further page is read only when a full page left the batch short (blocked events,
        or events another relay holds), up to ``max_pages``, so a run of blocked events at the head does not
        stall the events behind it; an even longer run waits for the earliest events to become due again
        (the earliest pending event is never blocked, so delivery always moves on).
        """
        t = self.table
        now = utcnow()
        claimed_at = time.monotonic()
        leased: list[OutboxEvent] = []
        after: tuple[datetime, str] | None = None
        async with self.database.sessionmaker.begin() as session:
            for _ in range(self.max_pages):
                page = (await session.execute(self._page(now=now, after=after))).all()
                ready = [row.id for row in page if not row.blocked]
                if ready:
                    # Lock, then lease: two statements rather than one ``UPDATE … WHERE id IN (SELECT … FOR
                    # UPDATE SKIP LOCKED)``, whose subquery PostgreSQL may run again for every row of the outer
                    # scan (20,000 pending events, never analyzed: about a minute per claim).
                    lock = (
                        select(t.c.id)
                        .where(t.c.id.in_(ready), *self._due(now))
                        .order_by(t.c.created_at, t.c.id)
                        .limit(self.batch_size - len(leased))
                        .with_for_update(skip_locked=True)
                    )
                    locked = list((await session.execute(lock)).scalars())
                    if locked:
                        claim = (
                            update(t)
                            .where(t.c.id.in_(locked))
                            .values(available_at=now + timedelta(seconds=self.lease_seconds))
                            .returning(
                                t.c.id,
                                t.c.destination,
                                t.c.event_type,
                                t.c.aggregate_id,
                                t.c.payload,
                                t.c.traceparent,
                                t.c.created_at,
                                t.c.attempts,
                            )
                        )
                        rows = (await session.execute(claim)).all()
                        leased += [OutboxEvent(**row._mapping, claimed_at=claimed_at) for row in rows]
                if len(leased) >= self.batch_size or len(page) < self.page_size:
                    break
                after = (page[-1].created_at, page[-1].id)
        return sorted(leased, key=lambda e: e.created_at)

    max_pages = 10
    """Pages of the head one claim reads at most: bounds a claim's cost while thousands of events are blocked."""

    @property
    def page_size(self) -> int:
        """Events read per page of the queue's head: room for blocked events and other relays' leases."""
        return 4 * self.batch_size

    def _due(self, now: datetime) -> tuple[ColumnElement[bool], ...]:
        t = self.table
        return (t.c.delivered_at.is_(None), t.c.dead_at.is_(None), t.c.available_at <= now)

    def _page(self, *, now: datetime, after: tuple[datetime, str] | None) -> Select[Any]:
        """The next ``page_size`` due events after ``after``, each with whether it is blocked."""
        t = self.table
        head = select(t.c.id, t.c.destination, t.c.aggregate_id, t.c.created_at).where(*self._due(now))
        if after is not None:
            last = tuple_(literal(after[0], t.c.created_at.type), literal(after[1], t.c.id.type))
            head = head.where(tuple_(t.c.created_at, t.c.id) > last)
        page = head.order_by(t.c.created_at, t.c.id).limit(self.page_size).subquery("head")
        earlier = t.alias("earlier")
        # Pending spelled so that it does not match ``ix_outbox_pending``'s predicate: left a choice, the planner
        # (without statistics on a young table) walked that index through every earlier pending event instead of
        # probing the aggregate's few events on ``ix_outbox_aggregate``.
        blocked = exists().where(
            earlier.c.destination == page.c.destination,
            earlier.c.aggregate_id == page.c.aggregate_id,
            earlier.c.created_at < page.c.created_at,
            func.coalesce(earlier.c.delivered_at, earlier.c.dead_at).is_(None),
        )
        return select(page.c.id, page.c.created_at, blocked.label("blocked")).order_by(
            page.c.created_at, page.c.id
        )

    async def _deliver_one(self, event: OutboxEvent) -> datetime | None:
        """POST one event; returns when it was delivered, or ``None`` when it failed (recorded here)."""
        context = context_from_traceparent(event.traceparent)
        with tracer.start_as_current_span(
            f"outbox deliver {event.event_type}",
            context=context,
            kind=trace.SpanKind.PRODUCER,
            attributes={"messaging.message.id": event.id, "messaging.destination.name": event.destination},
        ):
            try:
                await self.deliver(event)
            except Exception as exc:
                await self._record_failure(event, exc)
                return None
        log.debug(
            "outbox event delivered",
            extra={"event_id": event.id, "event_type": event.event_type, "destination": event.destination},
        )
        return utcnow()

    async def _record_failure(self, event: OutboxEvent, exc: Exception) -> None:
        attempts = event.attempts + 1
        dead = isinstance(exc, PermanentDeliveryError) or attempts >= self.max_attempts
        now = utcnow()
        values: dict[str, Any] = {"attempts": attempts, "last_error": f"{type(exc).__name__}: {exc}"[:2000]}
        details = {
            "event_id": event.id,
            "event_type": event.event_type,
            "attempts": attempts,
            "destination": event.destination,
            "error": values["last_error"],
        }
        if self.metrics is not None:
            self.metrics.failures.labels(
                event.destination, event.event_type, "dead" if dead else "retry"
            ).inc()
        if dead:
            values["dead_at"] = now
            log.error("outbox event dead-lettered", extra=details)
        else:
            values["available_at"] = now + self.backoff(attempts)
            log.warning(
                "outbox delivery failed, will retry",
                extra={**details, "retry_at": values["available_at"].isoformat()},
            )

        t = self.table
        # Only the claim this relay holds: once its lease ran out another relay may have claimed the event
        # again (and delivered it, or counted an attempt of its own), and that record stands.
        still_ours = update(t).where(
            t.c.id == event.id,
            t.c.delivered_at.is_(None),
            t.c.dead_at.is_(None),
            t.c.attempts == event.attempts,
        )

        async def write() -> None:
            async with self.database.sessionmaker.begin() as session:
                await session.execute(still_ours.values(**values))

        within = self.lease_seconds / 2
        if event.claimed_at is not None:  # no longer than the lease lasts
            within = max(0.0, min(within, event.claimed_at + self.lease_seconds - time.monotonic()))
        await outlasting_outages(write, within=within, what="recording an outbox failure")

    async def _mark_delivered(self, delivered: list[tuple[OutboxEvent, datetime]]) -> None:
        """Mark a batch's delivered events in one transaction: one statement for those whose payload stays,
        one for those whose secrets are masked now (``_redact_after_delivery``), each run for all its rows."""
        t = self.table
        kept: list[dict[str, Any]] = []
        masked: list[dict[str, Any]] = []
        for sent, at in delivered:
            row = {"event_id": sent.id, "at": at, "attempts": sent.attempts + 1}
            if sent.payload.get(REDACT_AFTER_DELIVERY):
                masked.append({**row, "masked": redacted(sent.payload)})
            else:
                kept.append(row)
        mark = update(t).where(t.c.id == bindparam("event_id"))
        values = {
            "delivered_at": bindparam("at", type_=t.c.delivered_at.type),
            "attempts": bindparam("attempts", type_=t.c.attempts.type),
        }

        async def write() -> None:
            async with self.database.sessionmaker.begin() as session:
                if kept:
                    await session.execute(mark.values(values), kept)
                if masked:
                    payload = bindparam("masked", type_=t.c.payload.type)
                    await session.execute(mark.values({**values, "payload": payload}), masked)

        # The events are out: were this record lost to a database outage, they would wait out their lease
        # (30 s) and go again, so it waits the outage out instead (half the lease).
        await outlasting_outages(
            write, within=self.lease_seconds / 2, what="recording delivered outbox events"
        )

    async def rest(self) -> None:
        await super().rest()
        if self.linger_seconds and self._wake.is_set():
            await asyncio.sleep(self.linger_seconds)

    async def _deliver_together(
        self, deliver_batch: DeliverBatch, destination: str, events: list[OutboxEvent]
    ) -> set[str]:
        """One request for ``events`` (all for ``destination``), each in a producer span of its own trace;
        returns the ids delivered, none when the batch failed (then they go one at a time)."""
        spans = [
            tracer.start_span(
                f"outbox deliver {e.event_type}",
                context=context_from_traceparent(e.traceparent),
                kind=trace.SpanKind.PRODUCER,
                attributes={"messaging.message.id": e.id, "messaging.destination.name": destination},
            )
            for e in events
        ]
        batch = [BatchedEvent(e, traceparent_of(span)) for e, span in zip(events, spans, strict=True)]
        try:
            delivered = await deliver_batch(destination, batch)
        except Exception as exc:
            log.warning(
                "outbox batch refused, delivering its events one at a time",
                extra={
                    "destination": destination,
                    "events": len(events),
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            delivered = set()
        for e, span in zip(events, spans, strict=True):
            if e.id not in delivered:
                span.set_status(trace.StatusCode.ERROR)
            span.end()
        return delivered

    async def run_once(self) -> int:
        """Claim and deliver one batch; returns how many events were attempted.

        Several events for one destination go in one request (``deliver_batch``); the rest, and those of a
        failed batch, one at a time: events of one aggregate one after another, different aggregates in
        parallel. The delivered ones are marked together once the batch is done, and the batch is logged as
        one line (each event at DEBUG; a failure is logged with its event).
        """
        events = await self.claim()
        if not events:
            return 0
        if self.gauges is None:
            await self._deliver_claimed(events)
        else:
            with self.gauges.delivering(Counter(e.destination for e in events)):
                await self._deliver_claimed(events)
        return len(events)

    async def _deliver_claimed(self, events: list[OutboxEvent]) -> None:
        started = time.monotonic()
        delivered: list[tuple[OutboxEvent, datetime]] = []
        by_destination: dict[str, list[OutboxEvent]] = {}
        for e in events:
            by_destination.setdefault(e.destination, []).append(e)

        async def deliver_group(
            deliver_batch: DeliverBatch, destination: str, group: list[OutboxEvent]
        ) -> None:
            acknowledged = await self._deliver_together(deliver_batch, destination, group)
            at = utcnow()
            delivered.extend((e, at) for e in group if e.id in acknowledged)

        if self.deliver_batch is not None:
            await asyncio.gather(
                *(
                    deliver_group(self.deliver_batch, d, group)
                    for d, group in by_destination.items()
                    if len(group) > 1
                )
            )
        done = {e.id for e, _ in delivered}
        chains: dict[tuple[str, str], list[OutboxEvent]] = {}
        singles: list[OutboxEvent] = []
        for e in events:
            if e.id in done:
                continue
            if e.aggregate_id is None:
                singles.append(e)
            else:
                chains.setdefault((e.destination, e.aggregate_id), []).append(e)

        async def deliver_chain(chain: list[OutboxEvent]) -> None:
            for e in chain:
                at = await self._deliver_one(e)
                if at is not None:
                    delivered.append((e, at))

        await asyncio.gather(
            *(deliver_chain([e]) for e in singles), *(deliver_chain(c) for c in chains.values())
        )
        await self._mark_delivered(delivered)
        if self.metrics is not None:
            for e, _ in delivered:
                self.metrics.deliveries.labels(e.destination, e.event_type).inc()
        log.info(
            "outbox batch delivered",
            extra={
                "events": len(events),
                "delivered": len(delivered),
                "failed": len(events) - len(delivered),
                "event_types": dict(Counter(e.event_type for e, _ in delivered)),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    async def pending_count(self) -> int:
        t = self.table
        async with self.database.sessionmaker() as session:
            count = await session.scalar(
                select(func.count()).select_from(t).where(t.c.delivered_at.is_(None), t.c.dead_at.is_(None))
            )
        return int(count or 0)


# --- operating an outbox: what it holds, and telling the operators about dead-lettered events ---------------


async def outbox_figures(*, database: Database, table: Table) -> dict[str, QueueFigures]:
    """Pending and dead-lettered events per destination, with the oldest pending event's time: one aggregate
    statement each, off ``ix_outbox_pending`` and ``ix_outbox_dead``."""
    t = table
    pending = (
        select(t.c.destination, func.count(), func.min(t.c.created_at))
        .where(t.c.delivered_at.is_(None), t.c.dead_at.is_(None))
        .group_by(t.c.destination)
    )
    dead = select(t.c.destination, func.count()).where(t.c.dead_at.is_not(None)).group_by(t.c.destination)
    async with database.sessionmaker() as session:
        waiting = {row[0]: (int(row[1]), row[2]) for row in await session.execute(pending)}
        given_up = {row[0]: int(row[1]) for row in await session.execute(dead)}
    return queue_figures(waiting, given_up)


def outbox_gauges(*, database: Database, table: Table, destinations: Collection[str]) -> QueueGauges:
    """``outbox_pending``, ``outbox_in_flight``, ``outbox_dead`` and ``outbox_oldest_pending_age_seconds`` by
    ``destination`` (every one of ``destinations`` reported, 0 when nothing is for it)."""

    async def read() -> dict[str, QueueFigures]:
        return await outbox_figures(database=database, table=table)

    return QueueGauges(
        name="outbox", label="destination", noun="Outbox events", read=read, always=destinations
    )


OUTBOX_DEAD_LETTERED = OutboxDeadLettered.event_type
"""Told to the operators' alert engine (the notifier) while a service's outbox holds dead-lettered events."""
OUTBOX_DEAD_CLEARED = OutboxDeadCleared.event_type
"""Told once none is dead any more (replayed)."""
DEAD_LETTER_REPORTS = (OUTBOX_DEAD_LETTERED, OUTBOX_DEAD_CLEARED)
DEAD_LETTER_REPORT_AGGREGATE = "outbox"
"""The reports' aggregate: they reach the notifier in the order they were written."""


@dataclass(frozen=True, slots=True)
class LastReport:
    """The newest report of a state written to an outbox: its event type and payload."""

    event_type: str
    payload: dict[str, Any]


async def last_report(
    session: AsyncSession, *, table: Table, destination: str, aggregate_id: str
) -> LastReport | None:
    """The newest event of ``aggregate_id`` to ``destination`` in the outbox (``ix_outbox_aggregate``), after
    taking the transaction-scoped lock of that report on PostgreSQL so replicas judging the same state take
    turns (SQLite runs one writing transaction at a time; services sharing a database merely queue on it). A state reported by events (a crossing and its
    recovery) is read back from the outbox itself: a report swept away after delivery is simply made again
    by the next check, which the receiver treats as the condition still holding."""
    t = table
    if session.get_bind().dialect.name == "postgresql":
        lock = f"{t.name} report {aggregate_id}"
        await session.execute(select(func.pg_advisory_xact_lock(func.hashtext(lock))))
    row = (
        await session.execute(
            select(t.c.event_type, t.c.payload)
            .where(t.c.destination == destination, t.c.aggregate_id == aggregate_id)
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(1)
        )
    ).first()
    return LastReport(row.event_type, dict(row.payload)) if row else None


async def report_dead_letters(*, database: Database, table: Table, service: str, destination: str) -> int:
    """Tell ``destination`` (through the outbox itself) how many events are dead-lettered when that number
    changed since the last report: ``outbox.dead_lettered`` with the count per destination and event type, or
    ``outbox.dead_cleared`` once none is left. Returns how many reports were written (0 or 1).

    Level-triggered rather than per event: the report is about the outbox's state, so a report lost or
    forgotten (delivered reports are swept like any event) is made good by the next check, and a burst of
    deaths is one message. The last report is read back from the outbox (``ix_outbox_aggregate``); replicas
    take turns on PostgreSQL (a transaction-scoped advisory lock), so a change is reported once. The reports
    themselves are not counted: a report that dies (its destination refuses it for good) must not report
    itself for ever; it still shows in ``outbox_dead``, the metric an alerting rule watches for exactly the
    case where the alert's own way is the one broken.
    """
    t = table
    dead = (
        select(t.c.destination, t.c.event_type, func.count(), func.min(t.c.dead_at))
        .where(t.c.dead_at.is_not(None), t.c.event_type.not_in(DEAD_LETTER_REPORTS))
        .group_by(t.c.destination, t.c.event_type)
        .order_by(t.c.destination, t.c.event_type)
    )
    async with database.sessionmaker.begin() as session:
        last = await last_report(
            session, table=t, destination=destination, aggregate_id=DEAD_LETTER_REPORT_AGGREGATE
        )
        rows = (await session.execute(dead)).all()
        total = sum(int(row[2]) for row in rows)
        reported = int(last.payload.get("dead", 0)) if last and last.event_type == OUTBOX_DEAD_LETTERED else 0
        if total == reported:
            return 0
        now = utcnow()
        report: Event
        if total:
            report = OutboxDeadLettered(
                service=service,
                dead=total,
                events=[DeadEvents(destination=row[0], event_type=row[1], dead=int(row[2])) for row in rows],
                oldest_dead_at=min(row[3] for row in rows),
                observed_at=now,
            )
            log.warning("dead-lettered outbox events reported", extra={"dead": total, "to": destination})
        else:
            report = OutboxDeadCleared(service=service, observed_at=now)
            log.info("no dead-lettered outbox event left; reported", extra={"to": destination})
        await publish(
            session, table, destination=destination, event=report, aggregate_id=DEAD_LETTER_REPORT_AGGREGATE
        )
    return 1
