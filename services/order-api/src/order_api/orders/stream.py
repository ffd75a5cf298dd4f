"""Live order streams: ``GET /v1/orders/{id}/events`` (Server-Sent Events).

A stream sends the order as ``GET /v1/orders/{id}`` shows it at once, then once per change: its status, its
deposit address, its place in the queue. It learns of changes from the signals every change of an order sends
(``orders.live``), from any replica: each signal wakes the streams of that order (and, when a queue moved, the
streams of the queued orders of that pool), and each woken stream reads its order again and sends what is
new. A queued order's place also moves when wallet-pool's queue does (an order ahead of it closes, one with
a higher priority joins), which order-api hears of late or not at all, so it is read again with every
heartbeat too.

Each event's ``id`` names the state it carries (``<version>``, or ``<version>.<queue place>`` while queued): a
client reconnecting with ``Last-Event-ID`` gets the order only if it changed since, and a closed order it
already saw ends with ``204`` (which tells ``EventSource`` to stop reconnecting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fastapi.sse import format_sse_event
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.service import CustomerPrincipal, check_still_live
from order_api.clients.wallet_pool import WalletPoolClient
from order_api.orders.errors import STREAM_RETRY_AFTER_SECONDS, TooManyStreamsError
from order_api.orders.lifecycle import TERMINAL
from order_api.orders.live import CHANNEL, OrderChange, queue_of
from order_api.orders.models import OrderStatus
from order_api.orders.schemas import OrderRead
from order_api.orders.service import get_order
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import Database, session_scope
from servicekit.server import draining as server_draining
from servicekit.signals import SignalListener

log = logging.getLogger("order_api.orders.stream")

# The event types of a stream (``event:``); each carries the order as ``GET /v1/orders/{id}`` shows it.
SNAPSHOT = "order"
"""The order as it is now: first on every stream, and after a change that is none of the three below."""
STATUS_CHANGED = "status_changed"
ADDRESS_ASSIGNED = "address_assigned"
"""The order got its deposit address (its status changed with it, to ``awaiting_deposit``)."""
QUEUE_POSITION = "queue_position"
"""The queued order's place (and estimated wait) changed."""
EVENT_TYPES = {
    SNAPSHOT: "The order as it is now: the first event of every stream, and any change not named below.",
    STATUS_CHANGED: "The order's status changed.",
    ADDRESS_ASSIGNED: "The order got its deposit address (and is now `awaiting_deposit`).",
    QUEUE_POSITION: "The queued order's place in the queue or its estimated wait changed.",
}
HEARTBEAT = b": heartbeat\n\n"
QUEUE_RECHECK_SECONDS = (0.3, 1.0, 3.0)
"""After a queue signal that showed a queued order no new place, when to read it again (wallet-pool's queue
moves once order-api's event reaches it, a relay hop later)."""
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Nothing on the way caches the stream or holds it back (``X-Accel-Buffering``: nginx)."""
CLOSED = frozenset(status.value for status in TERMINAL)
QUEUED = OrderStatus.QUEUED.value


def event_id(order: OrderRead) -> str:
    """The id of the state ``order`` is in: its version, and its queue place while it has one."""
    if order.queue_position is None:
        return str(order.version)
    return f"{order.version}.{order.queue_position}"


def change_kind(before: OrderRead, after: OrderRead) -> str | None:
    """What changed from ``before`` to ``after`` (an event type), or ``None`` when the customer sees nothing new."""
    if after.deposit_address is not None and after.deposit_address != before.deposit_address:
        return ADDRESS_ASSIGNED
    if after.status != before.status:
        return STATUS_CHANGED
    if (after.queue_position, after.estimated_wait_seconds) != (
        before.queue_position,
        before.estimated_wait_seconds,
    ):
        return QUEUE_POSITION
    if after.version != before.version:
        return SNAPSHOT
    return None


def encode(kind: str, order: OrderRead) -> bytes:
    return format_sse_event(data_str=order.model_dump_json(), event=kind, id=event_id(order))


@dataclass(eq=False)
class StreamWatch:
    """One open stream's place among a replica's streams: woken when its order (or its queue) moves."""

    order_id: str
    session_id: str
    client: str
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    queue: str | None = None
    closed: bool = False


class OrderStreams:
    """The open order streams of this replica: who waits for which order and queue, within the bounds."""

    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings
        self._by_order: defaultdict[str, set[StreamWatch]] = defaultdict(set)
        self._by_queue: defaultdict[str, set[StreamWatch]] = defaultdict(set)
        self._per_session: Counter[str] = Counter()
        self._per_client: Counter[str] = Counter()

    def listener(self, database: Database) -> SignalListener:
        """The worker that hears the signals of every replica (and, on the embedded database, of this one)."""
        return SignalListener(database, channel=CHANNEL, on_signal=self.on_signal, on_gap=self.wake_all)

    @property
    def open_count(self) -> int:
        return sum(len(watches) for watches in self._by_order.values())

    def on_signal(self, payload: str) -> None:
        try:
            change = OrderChange.read(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("an order signal that does not parse", extra={"payload": payload[:200]})
            return
        for watch in self._by_order.get(change.order_id, ()):
            watch.changed.set()
        if change.queue is not None:
            for watch in self._by_queue.get(change.queue, ()):
                watch.changed.set()

    def wake_all(self) -> None:
        """Signals may have been missed (the listening connection was lost): every stream reads again."""
        for watches in self._by_order.values():
            for watch in watches:
                watch.changed.set()

    def open(self, *, order_id: str, session_id: str, client: str) -> StreamWatch:
        """A place for one more stream, within the bounds per session and per client address."""
        settings = self._settings
        if self._per_session[session_id] >= settings.stream_max_per_session:
            raise TooManyStreamsError(
                f"This session already has {settings.stream_max_per_session} order streams open; close one.",
                retry_after_seconds=STREAM_RETRY_AFTER_SECONDS,
            )
        if self._per_client[client] >= settings.stream_max_per_client:
            raise TooManyStreamsError(
                f"Your address already has {settings.stream_max_per_client} order streams open; close one.",
                retry_after_seconds=STREAM_RETRY_AFTER_SECONDS,
            )
        watch = StreamWatch(order_id=order_id, session_id=session_id, client=client)
        self._by_order[order_id].add(watch)
        self._per_session[session_id] += 1
        self._per_client[client] += 1
        return watch

    def follow_queue(self, watch: StreamWatch, queue: str | None) -> None:
        """Wake ``watch`` when ``queue`` moves (``None``: its order waits in no queue)."""
        if watch.closed or watch.queue == queue:
            return
        if watch.queue is not None:
            _discard(self._by_queue, watch.queue, watch)
        watch.queue = queue
        if queue is not None:
            self._by_queue[queue].add(watch)

    def close(self, watch: StreamWatch) -> None:
        """Forget ``watch`` (idempotent: the stream's end and the response's clean-up both call it)."""
        if watch.closed:
            return
        self.follow_queue(watch, None)
        watch.closed = True
        _discard(self._by_order, watch.order_id, watch)
        _release(self._per_session, watch.session_id)
        _release(self._per_client, watch.client)


def _discard(index: defaultdict[str, set[StreamWatch]], key: str, watch: StreamWatch) -> None:
    watches = index.get(key)
    if watches is not None:
        watches.discard(watch)
        if not watches:
            del index[key]


def _release(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


@dataclass
class OrderStream:
    """One customer's open stream of one order, from the state it was opened with."""

    streams: OrderStreams
    watch: StreamWatch
    opened_with: OrderRead
    queue: str
    send_first: bool
    read_again: Callable[[], Awaitable[OrderRead]]
    settings: Settings

    def close(self) -> None:
        self.streams.close(self.watch)

    async def events(self) -> AsyncIterator[bytes]:
        """The stream's bytes until the order closes, the stream's lifetime ends or the client goes away
        (the response is then cancelled, and ``finally`` frees the stream's place)."""
        settings = self.settings
        ends = time.monotonic() + settings.stream_max_seconds
        last = self.opened_with
        draining = server_draining()
        try:
            yield format_sse_event(retry=settings.stream_retry_ms)
            if self.send_first:
                yield encode(SNAPSHOT, last)
            rechecks: list[
                float
            ] = []  # when to read a queued order's place again, after a wake that showed nothing
            while last.status not in CLOSED:
                self.streams.follow_queue(self.watch, self.queue if last.status == QUEUED else None)
                started = time.monotonic()
                if started >= ends:
                    return
                wait = min(
                    settings.stream_heartbeat_seconds, ends - started, *(at - started for at in rechecks[:1])
                )
                woken = await _woken(self.watch.changed, within=max(wait, 0))
                if draining.is_set():  # the server is shutting down: the client reconnects to another replica
                    return
                if not woken:
                    if time.monotonic() >= ends:
                        return
                    if rechecks and time.monotonic() >= rechecks[0]:
                        rechecks.pop(0)
                    else:
                        yield HEARTBEAT
                        if last.status != QUEUED:
                            continue
                self.watch.changed.clear()
                try:
                    now = await self.read_again()
                except Exception as exc:  # the order gone, the database away: the client reconnects
                    log.warning(
                        "an order stream ends early", extra={"order_id": last.id, "error": type(exc).__name__}
                    )
                    return
                kind = change_kind(last, now)
                if kind is not None:
                    yield encode(kind, now)
                    rechecks.clear()
                elif woken and now.status == QUEUED:
                    # The queue moved in order-api's eyes, not yet in wallet-pool's (a cancelled queued order
                    # leaves wallet-pool's queue when ``order.closed`` reaches it): read again shortly.
                    rechecks = [time.monotonic() + delay for delay in QUEUE_RECHECK_SECONDS]
                last = now
        finally:
            self.close()


async def _woken(changed: asyncio.Event, *, within: float) -> bool:
    """Whether ``changed`` was set within ``within`` seconds; the server beginning to drain cuts the wait short."""
    waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(server_draining().wait())]
    try:
        await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return changed.is_set()


async def open_order_stream(
    *,
    session: AsyncSession,
    database: Database,
    protection: DataProtection,
    wallet_pool: WalletPoolClient,
    settings: Settings,
    streams: OrderStreams,
    principal: CustomerPrincipal,
    client: str,
    order_id: str,
    last_event_id: str | None,
) -> OrderStream | None:
    """Open a stream of the customer's order, or ``None`` when there is nothing more to tell: the order is
    closed and ``last_event_id`` shows the client has its last state. Another customer's order is ``404``,
    a stream over the bounds ``429``, both before anything is streamed. Each later read checks the session
    again, so a stream whose session was ended (logout) stops at the next thing it would tell."""
    current = await get_order(
        session=session,
        protection=protection,
        wallet_pool=wallet_pool,
        principal=principal,
        order_id=order_id,
    )
    up_to_date = last_event_id is not None and last_event_id.strip() == event_id(current)
    if up_to_date and current.status in CLOSED:
        return None
    watch = streams.open(order_id=current.id, session_id=principal.session_id, client=client)
    # A change committed between the read above and this watch woke nobody: the first pass reads again.
    watch.changed.set()

    async def read_again() -> OrderRead:
        async for fresh in session_scope(database.sessionmaker):
            await check_still_live(session=fresh, principal=principal)
            return await get_order(
                session=fresh,
                protection=protection,
                wallet_pool=wallet_pool,
                principal=principal,
                order_id=order_id,
            )
        raise AssertionError("session_scope yields once")

    return OrderStream(
        streams=streams,
        watch=watch,
        opened_with=current,
        queue=queue_of(current.from_currency, current.from_network),
        send_first=not up_to_date,
        read_again=read_again,
        settings=settings,
    )
