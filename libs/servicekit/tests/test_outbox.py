"""The transactional outbox and the inbox, end to end on PostgreSQL.

The sender is this process: a ``Runtime`` with an outbox table in a database of its own and the relay that
``Runtime.add_outbox_relay`` builds. The receiver is the ``peer`` uvicorn process: ``events_router`` with an
inbox and a handler that inserts one ``effect`` row per processed event, so effects can be counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from sqlalchemy import RowMapping, event, select, update
from sqlalchemy import exc as sa_exc

from servicekit.app import Runtime
from servicekit.db import Database, new_metadata, utcnow
from servicekit.outbox import (
    BatchedEvent,
    EventEnvelope,
    OutboxEvent,
    OutboxRelay,
    PermanentDeliveryError,
    add_event,
    outbox_table,
)
from servicekit.settings import PeerSettings
from servicekit.testing import async_url, create_database, drop_database, eventually, free_port
from servicekit.testing.kitapps import KitSettings, Peer, create_tables, effect

DESTINATION = "kit-peer"
sender_metadata = new_metadata()
outbox = outbox_table(sender_metadata)


@dataclass
class Sender:
    """One sender replica: its runtime (database, peer client, relay) on the shared sender database."""

    runtime: Runtime
    relay: OutboxRelay
    deliveries: list[tuple[str, float, float]] = field(default_factory=list)
    """(event id, started, ended) of every delivery this relay attempted, on the monotonic clock (each event of
    a batch counts)."""
    batches: list[list[str]] = field(default_factory=list)
    """The event ids of every batch this relay attempted (``POST /v1/events/batch``)."""

    @property
    def database(self) -> Database:
        return self.runtime.database

    async def add(
        self, *, event_type: str = "kit.effect", aggregate_id: str | None = None, **payload: Any
    ) -> str:
        """Write one event in a committed transaction of its own."""
        async with self.database.sessionmaker.begin() as session:
            return await add_event(
                session,
                outbox,
                destination=DESTINATION,
                event_type=event_type,
                payload=payload,
                aggregate_id=aggregate_id,
            )

    async def rows(self, ids: Collection[str]) -> dict[str, RowMapping]:
        async with self.database.sessionmaker() as session:
            result = await session.execute(select(outbox).where(outbox.c.id.in_(list(ids))))
            return {row["id"]: row for row in result.mappings()}

    async def row(self, event_id: str) -> RowMapping:
        return (await self.rows([event_id]))[event_id]

    async def delivered(self, event_id: str) -> RowMapping | None:
        row = await self.row(event_id)
        return row if row["delivered_at"] is not None else None


class MakeSender(Protocol):
    async def __call__(
        self, *, url: str | None = None, lease_seconds: float = 5.0, **settings: Any
    ) -> Sender: ...


@pytest.fixture(scope="module")
async def sender_database_url() -> AsyncIterator[str]:
    name = await create_database("sk_sender")
    try:
        yield async_url(name)
    finally:
        await drop_database(name)


@pytest.fixture
async def make_sender(sender_database_url: str, tmp_path: Path, peer: Peer) -> AsyncIterator[MakeSender]:
    """Sender replicas on one PostgreSQL database with an empty outbox, delivering to the peer (or ``url``)."""
    made: list[Sender] = []
    pg_url = sender_database_url
    cleaner = Database(url=pg_url, schema="kit_sender", var_dir=tmp_path, service_name="kit-sender")
    try:
        await create_tables(cleaner, sender_metadata)
        async with cleaner.engine.begin() as connection:
            await connection.execute(outbox.delete())
    finally:
        await cleaner.dispose()

    async def make(*, url: str | None = None, lease_seconds: float = 5.0, **settings: Any) -> Sender:
        options: dict[str, Any] = {
            "outbox_poll_seconds": 0.05,
            "outbox_backoff_base_seconds": 0.05,
            "outbox_backoff_max_seconds": 1.0,
            "outbox_max_attempts": 5,
            **settings,
        }
        runtime = Runtime(
            KitSettings(
                service_name="kit-sender",
                var_dir=tmp_path,
                database_url=pg_url,
                database_schema="kit_sender",
                trace_database=False,
                **options,
            ),
            schema="kit_sender",
        )
        runtime.add_peer(
            DESTINATION, PeerSettings(url=url or peer.url, api_key=SecretStr(peer.key), timeout_seconds=5)
        )
        relay = runtime.add_outbox_relay(outbox)
        relay.lease_seconds = lease_seconds
        sender = Sender(runtime=runtime, relay=relay)
        real_deliver = relay.deliver

        async def timed_deliver(event: OutboxEvent) -> None:
            started = time.monotonic()
            try:
                await real_deliver(event)
            finally:
                sender.deliveries.append((event.id, started, time.monotonic()))

        relay.deliver = timed_deliver
        real_deliver_batch = relay.deliver_batch
        assert real_deliver_batch is not None

        async def timed_deliver_batch(destination: str, batch: list[BatchedEvent]) -> set[str]:
            started = time.monotonic()
            try:
                return await real_deliver_batch(destination, batch)
            finally:
                sender.deliveries += [(b.event.id, started, time.monotonic()) for b in batch]
                sender.batches.append([b.event.id for b in batch])

        relay.deliver_batch = timed_deliver_batch
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.runtime.stop()


async def effects(peer: Peer, event_ids: Collection[str]) -> list[RowMapping]:
    """The effect rows the receiver's handler wrote for these events, in the order it wrote them."""
    async with peer.database.sessionmaker() as session:
        result = await session.execute(
            select(effect).where(effect.c.event_id.in_(list(event_ids))).order_by(effect.c.id)
        )
        return list(result.mappings())


async def event_posts(peer: Peer) -> int:
    """Every event posted to the receiver so far, alone or in a batch, duplicates included."""
    async with httpx.AsyncClient(base_url=peer.url) as client:
        posts: int = (await client.get("/test/event-posts")).json()["posts"]
        return posts


async def batch_posts(peer: Peer) -> int:
    """Every ``POST /v1/events/batch`` the receiver got so far."""
    async with httpx.AsyncClient(base_url=peer.url) as client:
        batches: int = (await client.get("/test/event-posts")).json()["batches"]
        return batches


class Forwarder:
    """A TCP hop in front of the receiver: while it is closed nothing listens on its port, so to the sender
    the receiver is down; once opened, connections go through to the receiver process."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in self.writers:
                writer.close()
            await self.server.wait_closed()

    async def _forward(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [client_writer, upstream_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


async def settled(
    sender: Sender, event_id: str, column: str = "delivered_at", within: float = 10
) -> RowMapping:
    """Wait until the event's ``column`` (``delivered_at`` or ``dead_at``) is set; a failure shows the row."""

    async def probe() -> RowMapping:
        return await sender.row(event_id)

    return await eventually(probe, until=lambda row: row[column] is not None, within=within, message=column)


async def test_an_event_is_written_with_its_transaction_or_not_at_all(make_sender: MakeSender) -> None:
    sender = await make_sender()  # not started: nothing is delivered in this test
    lost: list[str] = []

    async def change_state_and_fail() -> None:
        async with sender.database.sessionmaker.begin() as session:
            lost.append(
                await add_event(
                    session, outbox, destination=DESTINATION, event_type="kit.effect", payload={"n": 1}
                )
            )
            raise RuntimeError("the state change failed, so the transaction is rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        await change_state_and_fail()
    assert len(lost) == 1
    assert await sender.rows(lost) == {}

    before = utcnow()
    kept = await sender.add(n=2, aggregate_id=None)
    row = await sender.row(kept)
    assert (row["destination"], row["event_type"], row["payload"]) == (DESTINATION, "kit.effect", {"n": 2})
    assert (row["attempts"], row["delivered_at"], row["dead_at"]) == (0, None, None)
    assert before <= row["created_at"] == row["available_at"] <= utcnow()


async def test_events_wait_while_the_receiver_is_down_and_are_delivered_once_it_is_up(
    make_sender: MakeSender, peer: Peer
) -> None:
    forwarder = Forwarder(peer.process.port)  # closed: nothing listens on its port yet
    sender = await make_sender(
        url=forwarder.url,
        outbox_backoff_base_seconds=0.1,
        outbox_backoff_max_seconds=5,
        outbox_max_attempts=50,
    )
    await sender.runtime.start()
    try:
        event_id = await sender.add(amount="12.50", note="nothing is lost")

        async def failed_attempts() -> int:
            return int((await sender.row(event_id))["attempts"])

        await eventually(failed_attempts, until=lambda n: n >= 4, within=20, message="4 failed attempts")
        row = await sender.row(event_id)
        assert (row["delivered_at"], row["dead_at"]) == (None, None)
        assert row["payload"] == {"amount": "12.50", "note": "nothing is lost"}
        assert "PeerUnavailableError" in row["last_error"]
        # Exponential backoff written to available_at (the relay claims a row only once it has passed): the
        # pause after failure n is at least half of that failure's ceiling, 0.1 * 2**(n-1) s.
        for n, ((_, _, ended), (_, next_started, _)) in enumerate(
            zip(sender.deliveries[:3], sender.deliveries[1:4], strict=True), start=1
        ):
            assert next_started - ended >= 0.1 * 2 ** (n - 1) / 2, (n, sender.deliveries)
        assert await effects(peer, [event_id]) == []

        posts_before = await event_posts(peer)
        await forwarder.open()  # the receiver comes up
        row = await settled(sender, event_id, within=20)
    finally:
        await sender.runtime.stop()
        await forwarder.close()

    assert row["dead_at"] is None
    assert row["attempts"] == len(sender.deliveries) >= 5
    (applied,) = await effects(peer, [event_id])
    assert applied["amount"] == Decimal("12.5")
    assert await event_posts(peer) - posts_before == 1
    assert await sender.relay.run_once() == 0  # nothing left to deliver
    assert len(await effects(peer, [event_id])) == 1


async def test_a_redelivered_event_is_a_duplicate_and_has_no_second_effect(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender()
    await sender.runtime.start()
    event_id = await sender.add(amount="3")
    row = await settled(sender, event_id)
    assert len(await effects(peer, [event_id])) == 1

    envelope = OutboxEvent(
        id=event_id,
        destination=DESTINATION,
        event_type=row["event_type"],
        aggregate_id=None,
        payload=row["payload"],
        traceparent=None,
        created_at=row["created_at"],
        attempts=1,
    ).envelope("kit-sender")
    fresh = EventEnvelope(
        id=str(uuid.uuid4()), type="kit.effect", source="kit-sender", occurred_at=utcnow(), payload={}
    )
    unknown = EventEnvelope(
        id=str(uuid.uuid4()), type="kit.unheard-of", source="kit-sender", occurred_at=utcnow(), payload={}
    )
    async with httpx.AsyncClient(
        base_url=peer.url, headers={"Authorization": f"Bearer {peer.key}"}
    ) as client:
        receipts = [
            (await client.post("/v1/events", json=e.model_dump(mode="json"))).json()
            for e in (envelope, envelope, fresh, unknown)
        ]
    assert receipts == [
        {"event_id": event_id, "status": "duplicate"},
        {"event_id": event_id, "status": "duplicate"},
        {"event_id": fresh.id, "status": "processed"},
        {"event_id": unknown.id, "status": "ignored"},
    ]
    assert len(await effects(peer, [event_id])) == 1
    assert len(await effects(peer, [fresh.id])) == 1


async def test_a_relay_dying_between_the_post_and_the_marking_redelivers_after_the_lease_with_one_effect(
    make_sender: MakeSender, peer: Peer
) -> None:
    doomed = await make_sender(lease_seconds=2.0)
    crashed = asyncio.Event()
    real_deliver = doomed.relay.deliver

    async def post_then_die(event: OutboxEvent) -> None:
        await real_deliver(event)  # the receiver processed it ...
        crashed.set()
        raise asyncio.CancelledError("... and the relay's process died before marking it delivered")

    doomed.relay.deliver = post_then_die
    posts_before = await event_posts(peer)
    await doomed.runtime.start()
    event_id = await doomed.add(amount="7")
    await asyncio.wait_for(crashed.wait(), 10)
    died_at = utcnow()
    await doomed.runtime.stop()
    leased = await doomed.row(event_id)
    assert (leased["delivered_at"], leased["attempts"]) == (None, 0)
    assert leased["available_at"] > died_at  # leased: nobody may claim it before the lease runs out
    assert len(await effects(peer, [event_id])) == 1

    survivor = await make_sender(lease_seconds=2.0)  # another replica, or the restarted one
    await survivor.runtime.start()
    row = await settled(survivor, event_id)
    assert row["delivered_at"] >= leased["available_at"]
    assert row["attempts"] == 1
    assert await event_posts(peer) - posts_before == 2
    assert len(await effects(peer, [event_id])) == 1


async def test_a_database_outage_while_marking_delivered_events_is_waited_out_not_left_to_the_lease(
    make_sender: MakeSender, peer: Peer
) -> None:
    """The events are out when their marking meets a lost connection: the marking is tried again once the
    database answers, so they are marked in the same pass instead of waiting out a long lease and going again."""
    sender = await make_sender(lease_seconds=60.0)
    cut: list[str] = []

    def lose_the_connection_once(
        connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        if not cut and statement.lstrip().upper().startswith("UPDATE") and "delivered_at" in statement:
            cut.append(statement)
            raise sa_exc.DisconnectionError("connection was terminated")

    event.listen(sender.database.engine.sync_engine, "before_cursor_execute", lose_the_connection_once)
    posts_before = await event_posts(peer)
    await sender.runtime.start()
    event_id = await sender.add(amount="8")
    row = await settled(sender, event_id, within=10)
    assert cut, "the marking never met the lost connection"
    assert row["attempts"] == 1
    assert await event_posts(peer) - posts_before == 1  # delivered once, not again after a lease
    assert len(await effects(peer, [event_id])) == 1


async def test_an_event_failing_max_attempts_times_is_dead_lettered_and_never_retried(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender(outbox_max_attempts=3)
    posts_before = await event_posts(peer)
    await sender.runtime.start()
    event_id = await sender.add(fail_times=1000)  # the receiver's handler fails every time: a 500

    row = await settled(sender, event_id, "dead_at", within=15)
    await sender.relay.stop()
    assert (row["attempts"], row["delivered_at"]) == (3, None)
    assert "PeerUnavailableError" in row["last_error"]
    assert "500" in row["last_error"]
    assert await sender.relay.run_once() == 0
    assert (await sender.row(event_id))["attempts"] == 3
    assert await event_posts(peer) - posts_before == 3
    assert await effects(peer, [event_id]) == []


async def test_a_failure_recorded_after_the_lease_leaves_the_newer_claims_record_alone(
    make_sender: MakeSender,
) -> None:
    """A relay records its failure late (an attempt or an outage outlasted its lease): meanwhile another relay
    claimed each event again, delivering one and failing the other. Their records stand: the late failure
    neither dead-letters the delivered event nor overwrites the other's attempt."""
    sender = await make_sender()
    delivered_id = await sender.add(aggregate_id="a", amount="1")
    retried_id = await sender.add(aggregate_id="b", amount="2")
    stale = {e.id: e for e in await sender.relay.claim()}
    delivered_at = utcnow()
    async with sender.database.sessionmaker.begin() as session:  # the other relay's records
        await session.execute(
            update(outbox).where(outbox.c.id == delivered_id).values(attempts=1, delivered_at=delivered_at)
        )
        await session.execute(
            update(outbox).where(outbox.c.id == retried_id).values(attempts=1, last_error="theirs")
        )

    for stale_event in stale.values():
        await sender.relay._record_failure(stale_event, PermanentDeliveryError("422: refused"))

    rows = await sender.rows([delivered_id, retried_id])
    delivered, retried = rows[delivered_id], rows[retried_id]
    assert (delivered["attempts"], delivered["delivered_at"], delivered["dead_at"]) == (1, delivered_at, None)
    assert (retried["attempts"], retried["dead_at"], retried["last_error"]) == (1, None, "theirs")


async def test_a_422_from_the_receiver_dead_letters_at_once(make_sender: MakeSender, peer: Peer) -> None:
    sender = await make_sender(outbox_max_attempts=10)
    posts_before = await event_posts(peer)
    await sender.runtime.start()
    event_id = await sender.add(event_type="kit.invalid", amount="not a number")

    row = await settled(sender, event_id, "dead_at")
    assert (row["attempts"], row["delivered_at"]) == (1, None)
    assert row["last_error"] == "PermanentDeliveryError: payload.amount: must be a decimal string"
    assert await event_posts(peer) - posts_before == 1


async def test_an_event_the_receivers_input_guard_refuses_dead_letters_at_once(
    make_sender: MakeSender, peer: Peer
) -> None:
    """A NUL in a payload can never be stored: the receiver's 422 ``forbidden_character`` is permanent too."""
    sender = await make_sender(outbox_max_attempts=10)
    posts_before = await event_posts(peer)
    await sender.runtime.start()
    event_id = await sender.add(amount="1", note="a\x00b")

    row = await settled(sender, event_id, "dead_at")
    assert (row["attempts"], row["delivered_at"]) == (1, None)
    assert row["last_error"] == "PermanentDeliveryError: payload.note: NUL characters are not allowed"
    assert await event_posts(peer) - posts_before == 1
    assert await effects(peer, [event_id]) == []


async def test_the_delivery_continues_the_trace_of_the_transaction_that_wrote_the_event(
    make_sender: MakeSender, peer: Peer, spans: InMemorySpanExporter
) -> None:
    sender = await make_sender()
    with trace.get_tracer("kit-sender").start_as_current_span("place order") as writer:
        event_id = await sender.add(amount="1")
    context = writer.get_span_context()
    trace_id, writer_span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
    assert context.trace_flags.sampled
    traceparent = f"00-{trace_id}-{writer_span_id}-{context.trace_flags:02x}"
    assert (await sender.row(event_id))["traceparent"] == traceparent

    await sender.runtime.start()  # later, from the relay's own task
    await settled(sender, event_id)

    (deliver_span,) = [s for s in spans.get_finished_spans() if s.name == "outbox deliver kit.effect"]
    assert deliver_span.context.trace_id == context.trace_id
    assert deliver_span.parent is not None
    assert deliver_span.parent.span_id == context.span_id
    (processed,) = [
        r
        for r in peer.process.log_records()
        if r.get("event") == "event processed" and r.get("event_id") == event_id
    ]
    assert processed["trace_id"] == processed["correlation_id"] == trace_id


async def test_two_relays_on_one_table_deliver_each_event_once(make_sender: MakeSender, peer: Peer) -> None:
    replicas = [await make_sender(), await make_sender()]
    for replica in replicas:
        replica.relay.batch_size = 25
    async with replicas[0].database.sessionmaker.begin() as session:
        ids = [
            await add_event(
                session, outbox, destination=DESTINATION, event_type="kit.effect", payload={"n": n}
            )
            for n in range(200)
        ]
    posts_before = await event_posts(peer)
    await asyncio.gather(*(replica.runtime.start() for replica in replicas))

    async def pending() -> int:
        return await replicas[0].relay.pending_count()

    await eventually(pending, until=lambda n: n == 0, within=45, message="all 200 delivered")
    rows = await replicas[0].rows(ids)
    assert len(rows) == 200
    assert Counter(row["attempts"] for row in rows.values()) == {1: 200}
    assert all(row["delivered_at"] is not None for row in rows.values())
    per_replica = [len(replica.deliveries) for replica in replicas]
    assert sum(per_replica) == 200
    assert min(per_replica) > 0, per_replica  # both took part
    assert await event_posts(peer) - posts_before == 200
    applied = await effects(peer, ids)
    assert len(applied) == 200
    assert {row["event_id"] for row in applied} == set(ids)


async def test_events_of_one_aggregate_are_delivered_in_the_order_written_even_when_one_fails(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender(outbox_backoff_base_seconds=0.3)
    order = f"order-{uuid.uuid4().hex[:8]}"
    # Its handler fails twice: in the batch with ``other`` (refused as a whole), then alone.
    first = await sender.add(aggregate_id=order, seq=1, fail_times=2)
    second = await sender.add(aggregate_id=order, seq=2)
    third = await sender.add(aggregate_id=order, seq=3)
    other = await sender.add(aggregate_id=f"other-{order}", seq=1)
    await sender.runtime.start()

    async def all_delivered() -> dict[str, RowMapping] | None:
        rows = await sender.rows([first, second, third, other])
        return rows if all(r["delivered_at"] is not None for r in rows.values()) else None

    rows = await eventually(all_delivered, within=15, message="all delivered")
    assert rows is not None
    assert [row["seq"] for row in await effects(peer, [first, second, third])] == [1, 2, 3]
    assert [rows[e]["attempts"] for e in (first, second, third, other)] == [2, 1, 1, 1]
    delivered_at: list[datetime] = [rows[e]["delivered_at"] for e in (first, second, third)]
    assert delivered_at == sorted(delivered_at)
    # The other aggregate did not wait for the failing one.
    assert rows[other]["delivered_at"] < rows[first]["delivered_at"]


async def test_a_run_of_blocked_events_longer_than_a_page_does_not_hold_up_the_events_behind_it(
    make_sender: MakeSender, peer: Peer
) -> None:
    # The relay reads the queue's head a page at a time (4 x batch size = 20 here). 30 events of one order wait
    # behind its first, which failed and backs off for 2-4 s; events written after them are delivered meanwhile.
    sender = await make_sender(outbox_backoff_base_seconds=4.0, outbox_backoff_max_seconds=4.0)
    sender.relay.batch_size = 5
    order = f"order-{uuid.uuid4().hex[:8]}"
    first = await sender.add(aggregate_id=order, seq=1, fail_times=1)
    waiting = [await sender.add(aggregate_id=order, seq=seq) for seq in range(2, 32)]
    assert len(waiting) > sender.relay.page_size
    await sender.runtime.start()
    failed = await eventually(
        lambda: sender.row(first), until=lambda row: row["attempts"] == 1, within=10, message="first failed"
    )
    assert failed["delivered_at"] is None

    behind = [await sender.add(aggregate_id=f"other-{n}-{order}", seq=1) for n in range(7)]
    behind.append(await sender.add(seq=1))  # no aggregate at all
    for event_id in behind:
        await settled(sender, event_id)
    still_waiting = await sender.row(first)
    assert still_waiting["delivered_at"] is None, "delivered only after the first event's retry"
    assert (
        still_waiting["available_at"]
        > max((await sender.rows(behind)).values(), key=lambda r: r["delivered_at"])["delivered_at"]
    )

    everything = [first, *waiting]
    await settled(sender, waiting[-1], within=30)
    rows = await sender.rows(everything)
    assert [row["seq"] for row in await effects(peer, everything)] == list(range(1, 32))
    delivered_at = [rows[e]["delivered_at"] for e in everything]
    assert delivered_at == sorted(delivered_at)
    assert [rows[e]["attempts"] for e in everything] == [2] + [1] * 30


async def test_a_batch_masks_the_listed_fields_of_its_delivered_events_and_keeps_the_rest(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender()
    sender.relay.batch_size = 50
    secret = [
        await sender.add(
            amount=f"{n}.25", note="to the receiver only", _redact_after_delivery=["amount", "note"]
        )
        for n in range(1, 11)
    ]
    plain = [await sender.add(amount=f"{n}.5", note="kept") for n in range(1, 11)]
    posts_before = await event_posts(peer)
    assert await sender.relay.run_once() == 20  # one batch, marked in one transaction

    rows = await sender.rows([*secret, *plain])
    assert all(row["delivered_at"] is not None and row["attempts"] == 1 for row in rows.values())
    for n, event_id in enumerate(secret, start=1):
        assert rows[event_id]["payload"] == {
            "amount": "***",
            "note": "***",
            "_redact_after_delivery": ["amount", "note"],
        }, n
    assert [rows[e]["payload"] for e in plain] == [{"amount": f"{n}.5", "note": "kept"} for n in range(1, 11)]
    applied = {row["event_id"]: row["amount"] for row in await effects(peer, [*secret, *plain])}
    assert [applied[e] for e in secret] == [Decimal(f"{n}.25") for n in range(1, 11)]  # sent in the clear
    assert [applied[e] for e in plain] == [Decimal(f"{n}.5") for n in range(1, 11)]
    assert await event_posts(peer) - posts_before == 20
    assert await sender.relay.run_once() == 0


async def test_several_events_for_one_peer_travel_in_one_request_and_are_applied_in_order(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender()
    run = uuid.uuid4().hex[:8]
    ids = [
        await sender.add(aggregate_id=f"order-{seq}-{run}", seq=seq, amount=f"{seq}.1")
        for seq in range(1, 13)
    ]
    ids.append(await sender.add(seq=13))  # no aggregate
    posts_before, batches_before = await event_posts(peer), await batch_posts(peer)

    assert await sender.relay.run_once() == 13

    assert sender.batches == [ids]
    assert await batch_posts(peer) - batches_before == 1
    assert await event_posts(peer) - posts_before == 13  # and no single POST besides
    assert [row["seq"] for row in await effects(peer, ids)] == list(range(1, 14))
    rows = await sender.rows(ids)
    assert all(row["delivered_at"] is not None and row["attempts"] == 1 for row in rows.values())
    assert await sender.relay.run_once() == 0


async def test_a_refused_batch_is_delivered_again_one_event_at_a_time(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender(outbox_backoff_base_seconds=0.2)
    good = [await sender.add(aggregate_id=f"good-{n}-{uuid.uuid4().hex[:6]}", seq=n) for n in range(3)]
    # Rejected at once whenever it is posted: the receiver answers 422, so the batch fails as a whole.
    bad = await sender.add(event_type="kit.invalid", amount="not a number")
    posts_before, batches_before = await event_posts(peer), await batch_posts(peer)

    assert await sender.relay.run_once() == 4

    assert await batch_posts(peer) - batches_before == 1
    assert await event_posts(peer) - posts_before == 4 + 4  # the batch, then each event alone
    rows = await sender.rows([*good, bad])
    assert [(rows[e]["attempts"], rows[e]["delivered_at"] is not None) for e in good] == [(1, True)] * 3
    assert (rows[bad]["attempts"], rows[bad]["delivered_at"], rows[bad]["dead_at"] is not None) == (
        1,
        None,
        True,
    )
    assert rows[bad]["last_error"] == "PermanentDeliveryError: payload.amount: must be a decimal string"
    assert len(await effects(peer, good)) == 3  # once each: the refused batch applied nothing


async def test_a_batch_is_applied_all_or_nothing_and_answers_each_event(peer: Peer) -> None:
    def envelope(event_type: str = "kit.effect", **payload: Any) -> dict[str, Any]:
        return EventEnvelope(
            id=str(uuid.uuid4()), type=event_type, source="kit-sender", occurred_at=utcnow(), payload=payload
        ).model_dump(mode="json")

    applied, seen_twice, unknown, failing = envelope(seq=1), envelope(seq=2), envelope("kit.new"), envelope()
    failing["payload"]["fail_times"] = 1
    async with httpx.AsyncClient(
        base_url=peer.url, headers={"Authorization": f"Bearer {peer.key}"}
    ) as client:
        refused = await client.post("/v1/events/batch", json={"events": [applied, failing]})
        assert refused.status_code == 500
        assert await effects(peer, [applied["id"]]) == []  # rolled back with the failing one

        answer = await client.post(
            "/v1/events/batch", json={"events": [applied, seen_twice, seen_twice, unknown, failing]}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["receipts"] == [
            {"event_id": applied["id"], "status": "processed"},
            {"event_id": seen_twice["id"], "status": "processed"},
            {"event_id": seen_twice["id"], "status": "duplicate"},
            {"event_id": unknown["id"], "status": "ignored"},
            {"event_id": failing["id"], "status": "processed"},
        ]
        empty = await client.post("/v1/events/batch", json={"events": []})
        assert empty.status_code == 422
        assert empty.json()["errors"][0]["field"] == "events"
    assert len(await effects(peer, [applied["id"], seen_twice["id"], failing["id"]])) == 3


async def test_a_batch_writes_all_its_inbox_rows_before_it_handles_its_first_event(peer: Peer) -> None:
    """So a batch never waits for a later event's inbox row while it holds a lock an earlier handler took: the
    same event delivered alone (a relay that gave up on the batch, another replica) may hold that row and wait
    for the lock, and the two would deadlock."""
    later = [str(uuid.uuid4()), str(uuid.uuid4())]
    first = EventEnvelope(
        id=str(uuid.uuid4()),
        type="kit.count_claimed",
        source="kit-sender",
        occurred_at=utcnow(),
        payload={"batch_ids": later},
    )
    events = [first.model_dump(mode="json")] + [
        EventEnvelope(
            id=event_id, type="kit.effect", source="kit-sender", occurred_at=utcnow(), payload={"seq": n}
        ).model_dump(mode="json")
        for n, event_id in enumerate(later)
    ]
    async with httpx.AsyncClient(
        base_url=peer.url, headers={"Authorization": f"Bearer {peer.key}"}
    ) as client:
        answer = await client.post("/v1/events/batch", json={"events": events})
    assert answer.status_code == 200, answer.text
    assert [r["status"] for r in answer.json()["receipts"]] == ["processed"] * 3
    [probe] = await effects(peer, [first.id])
    assert probe["seq"] == 2  # both later events were in the inbox when the first was handled


async def test_each_event_of_a_batch_is_handled_in_the_trace_that_wrote_it(
    make_sender: MakeSender, peer: Peer
) -> None:
    sender = await make_sender()
    written: dict[str, str] = {}
    for n in range(3):
        with trace.get_tracer("kit-sender").start_as_current_span(f"place order {n}") as writer:
            event_id = await sender.add(amount=str(n))
        written[event_id] = format(writer.get_span_context().trace_id, "032x")

    assert await sender.relay.run_once() == 3
    assert sender.batches == [list(written)]

    async def processed() -> dict[str, str]:
        return {
            str(r["event_id"]): str(r["trace_id"])
            for r in peer.process.log_records()
            if r.get("event") == "event processed" and r.get("event_id") in written
        }

    assert await eventually(processed, until=lambda found: len(found) == 3) == written
