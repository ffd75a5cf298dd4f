"""Which replica polls Telegram: a lease, so that exactly one of several gateways calls ``getUpdates``
(Telegram serves one long-polling client per bot and answers the others ``409 Conflict``).

The lease is a PostgreSQL session advisory lock, held on a connection of its own for as long as the replica
polls. The gateway always has its database, and the server lets go of the lock the moment the holder's
connection closes (a crash, ``kill -9``, a deleted pod), so no expiry has to be tuned: a waiting replica asks
again every ``POLLER_LEASE_RETRY_SECONDS`` and takes over at its next try. The holder checks its connection
just as often; if the connection is gone, so is the lease, and it stops polling before asking again. The
holder's session also carries ``idle_session_timeout`` (a few checks long), so a holder that vanished without
closing its connection (its node lost) is dropped by the server instead of holding the lease until TCP gives
up.

On the embedded SQLite database (one node) there is no lease: the one process polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Gauge
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servicekit.db import create_engine

log = logging.getLogger("telegram_gateway.bot")

IDLE_SESSION_TIMEOUT_CHECKS = 4
"""The holder's session is ended by the server after this many missed checks (PostgreSQL 14 and later)."""
IDLE_SESSION_TIMEOUT_SINCE = 140000


class PollerLease:
    """The right to poll, shared by the replicas through their database (``name``: one lease per bot)."""

    def __init__(
        self, *, database_url: str, schema: str, name: str, retry_seconds: float, leader: Gauge
    ) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self.leader = leader
        self._engine: AsyncEngine = create_engine(database_url, schema=schema, pool_size=1)
        self._connection: AsyncConnection | None = None
        self.held = False
        """Whether this replica polls (also ``telegram_poller_leader``)."""
        self._hold(False)

    async def acquire(self) -> None:
        """Wait until this replica holds the lease (asking again every ``retry_seconds``)."""
        waiting_said = False
        while True:
            try:
                if await self._try_acquire():
                    self._hold(True)
                    log.info("became the poller: this replica polls Telegram", extra={"lease": self.name})
                    return
            except (OSError, SQLAlchemyError) as error:
                await self._drop_connection()
                log.warning(
                    "cannot ask for the poller lease: the database is unreachable; retrying",
                    extra={"lease": self.name, "error": str(error)[:300]},
                )
            else:
                if not waiting_said:
                    log.info(
                        "another replica polls Telegram; this one serves HTTP and takes over if it stops",
                        extra={"lease": self.name, "retry_seconds": self.retry_seconds},
                    )
                    waiting_said = True
            await asyncio.sleep(self.retry_seconds)

    async def lost(self) -> None:
        """Return when the lease is lost (its connection failed a check); checked every ``retry_seconds``."""
        while True:
            await asyncio.sleep(self.retry_seconds)
            try:
                connection = self._held()
                await asyncio.wait_for(connection.execute(text("SELECT 1")), self.retry_seconds)
            except (OSError, TimeoutError, SQLAlchemyError, RuntimeError) as error:
                await self._drop_connection()
                self._hold(False)
                log.warning(
                    "lost the poller lease (its database connection failed): stopped polling",
                    extra={"lease": self.name, "error": str(error)[:300]},
                )
                return

    async def release(self) -> None:
        """Let go of the lease (closing its connection releases the lock) and of the engine."""
        if self._connection is not None:
            log.info("gave up the poller lease", extra={"lease": self.name})
        await self._drop_connection()
        self._hold(False)
        await self._engine.dispose()

    async def _try_acquire(self) -> bool:
        if self._connection is None:
            connection = await self._engine.connect()
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
            version = int(await connection.scalar(text("SHOW server_version_num")) or 0)
            if version >= IDLE_SESSION_TIMEOUT_SINCE:
                timeout_ms = int(self.retry_seconds * IDLE_SESSION_TIMEOUT_CHECKS * 1000)
                await connection.execute(
                    select(func.set_config("idle_session_timeout", str(timeout_ms), False))
                )
        key = func.hashtextextended(self.name, 0)
        return bool(await self._connection.scalar(select(func.pg_try_advisory_lock(key))))

    def _hold(self, held: bool) -> None:
        self.held = held
        self.leader.set(1 if held else 0)

    def _held(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the poller lease is not held")
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError, DBAPIError, SQLAlchemyError):
                await connection.invalidate()
                await connection.close()
