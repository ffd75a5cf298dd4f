"""Signals sent with a commit to every replica of a service: "something changed, look again".

On PostgreSQL a signal is a ``NOTIFY`` issued in the transaction that makes the change
(:func:`send_signal`): PostgreSQL delivers it only if that transaction commits, after the commit, in commit
order, to every session listening on the channel, so a listener that reads the database on a signal sees the
change. Each replica holds one listening connection (:class:`SignalListener`, a worker of its runtime),
which hands every payload to a callback.

On the embedded database (SQLite, one process) there is nobody else to tell: the signals of a session are
kept until it commits and handed to the listener of their channel in process, and dropped on a rollback.

A signal says only *what* to look at again, never the new state: the receiver reads it from the database,
so a signal lost with a listening connection costs nothing once :attr:`SignalListener.on_gap` has made
every receiver read again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from servicekit.db import Database, is_postgresql
from servicekit.workers import cancel_task

log = logging.getLogger("servicekit.signals")

_PENDING = "servicekit.signals.pending"
_LOCAL_LISTENERS = "servicekit.signals.listeners"
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
"""How long a replica waits before listening again after its listening connection was lost, per attempt."""
KEEPALIVE_SECONDS = 30.0
"""How often a quiet listening connection is asked ``SELECT 1``; one that does not answer within
:data:`KEEPALIVE_TIMEOUT_SECONDS` is dropped and replaced (then every stream reads again)."""
KEEPALIVE_TIMEOUT_SECONDS = 5.0


async def send_signal(session: AsyncSession, *, channel: str, payload: str) -> None:
    """Signal ``payload`` on ``channel`` once ``session``'s transaction commits (never if it rolls back)."""
    if is_postgresql(session):
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )
    else:
        await session.connection()  # in a transaction, so that its rollback drops the signal too
        session.sync_session.info.setdefault(_PENDING, []).append((channel, payload))


@event.listens_for(Session, "after_commit")
def _deliver_in_process(session: Session) -> None:
    pending: list[tuple[str, str]] = session.info.pop(_PENDING, [])
    listeners: dict[str, SignalListener] = session.info.get(_LOCAL_LISTENERS, {})
    for channel, payload in pending:
        listener = listeners.get(channel)
        if listener is not None:
            listener.on_signal(payload)


@event.listens_for(Session, "after_soft_rollback")
def _forget_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint within it
        session.info.pop(_PENDING, None)


class SignalListener:
    """One replica's ear on ``channel``: ``on_signal(payload)`` for every signal committed by any replica,
    ``on_gap()`` after the listening connection was lost and found again (signals may have been missed).

    A runtime worker: started with the service, stopped before it exits. On PostgreSQL it holds one connection
    of its own (not from the pool) for as long as it runs; on the embedded database it holds nothing.
    """

    def __init__(
        self,
        database: Database,
        *,
        channel: str,
        on_signal: Callable[[str], None],
        on_gap: Callable[[], None],
    ) -> None:
        self._database = database
        self.channel = channel
        self.on_signal = on_signal
        self.on_gap = on_gap
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        """Set while signals of other replicas reach this one (always on the embedded database)."""
        if not database.is_postgres:
            listeners: dict[str, SignalListener] = database.session_info.setdefault(_LOCAL_LISTENERS, {})  # type: ignore[assignment]
            listeners[channel] = self

    def start(self) -> None:
        if not self._database.is_postgres:
            self.listening.set()
            return
        self._task = asyncio.create_task(self._listen(), name=f"signals:{self.channel}")

    async def stop(self) -> None:
        await cancel_task(self._task)
        self._task = None
        self.listening.clear()

    def _receive(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.on_signal(payload)

    async def _listen(self) -> None:
        attempt = 0
        while True:
            lost = asyncio.Event()
            connection: asyncpg.Connection | None = None
            try:
                connection = await self._connect()
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(self.channel, self._receive)
                if attempt:
                    log.info("listening for signals again", extra={"channel": self.channel})
                    self.on_gap()
                attempt = 0
                self.listening.set()
                await self._until_lost(connection, lost)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any database trouble: listen again after a pause
                log.warning(
                    "not listening for signals", extra={"channel": self.channel, "error": type(exc).__name__}
                )
            finally:
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    connection.terminate()  # at once, even while cancelled
            await asyncio.sleep(RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)])
            attempt += 1

    async def _until_lost(self, connection: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Returns when the connection is closed, or raises when it stops answering: a connection dropped
        silently (an idle timeout on the way, a failover without a reset) is never reported closed, and would
        leave this replica's streams deaf."""
        while True:
            try:
                await asyncio.wait_for(lost.wait(), timeout=KEEPALIVE_SECONDS)
                return
            except TimeoutError:
                await asyncio.wait_for(connection.execute("SELECT 1"), timeout=KEEPALIVE_TIMEOUT_SECONDS)

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own, outside the service's pool: it stays in ``LISTEN`` for as long as it lives,
        and is never handed to a request."""
        dialect = self._database.engine.sync_engine.dialect
        args, options = dialect.create_connect_args(make_url(self._database.session_url))
        options["server_settings"] = {"application_name": f"{self._database.schema}-signals"}
        return await asyncpg.connect(*args, **options)


def _setter(flag: asyncio.Event) -> Callable[[Any], None]:
    return lambda _connection: flag.set()
