"""The backing stores (PostgreSQL, Redis) failing: recognised as an outage, answered ``503``, waited out.

A request that meets an outage (the store unreachable, its connection terminated mid-request, no pooled
connection free within the pool's wait) is answered ``503 backing_store_unavailable`` with ``Retry-After``
and logged once, at WARNING, without a stack trace: the caller retries, nothing is half-done (the request's
unit of work rolled back). Anything else a store raises (a constraint, a syntax error) is a bug or a domain
case, and stays what it was. Workers that meet an outage back off and try again (``servicekit.workers``).

Redis clients come from :func:`redis_client`: a *blocking* pool, so a burst of requests queues for a
connection (up to ``redis_pool_timeout_seconds``) instead of being refused, with socket timeouts so a frozen
Redis costs a bounded wait, and a short retry.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import redis.exceptions
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from sqlalchemy import exc as sa_exc

if TYPE_CHECKING:
    from servicekit.settings import ServiceSettings

BACKING_STORE_RETRY_AFTER_SECONDS = 2
"""The ``Retry-After`` of a request that met a backing-store outage: a restarted store or a replaced
connection is usually back within a second or two."""

BACKING_STORE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.RedisError,
    sa_exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)
"""The roots of what a backing store raises (:func:`is_outage` decides which of them is an outage)."""

_OUTAGES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # refused, reset, and a pool with no free connection in time
    redis.exceptions.TimeoutError,
    sa_exc.TimeoutError,  # SQLAlchemy's pool: no connection free within pool_timeout
    sa_exc.DisconnectionError,
    asyncpg.PostgresConnectionError,  # the connection does not exist (terminated), cannot connect
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown (pg_terminate_backend), cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, out of memory or disk
    asyncpg.InterfaceError,  # the connection is closed
)
_NETWORK_OUTAGES: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe: asyncpg connecting raises these as they are
    socket.gaierror,  # the store's host name does not resolve
)
"""Counted only as the error raised itself: as the cause of another library's error (an HTTP client's, say)
they are that library's failure, not a store's."""

log = logging.getLogger("servicekit.backing")
T = TypeVar("T")


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) says a backing store is unreachable or lost the connection, as
    opposed to refusing the statement itself."""
    if isinstance(error, _NETWORK_OUTAGES):
        return True
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, _OUTAGES):
            return True
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sqlite3.OperationalError) and "database is locked" in str(current):
            return True
        orig = current.orig if isinstance(current, sa_exc.DBAPIError) else None
        pending.extend((orig, current.__cause__))
    return False


def describe(error: BaseException) -> str:
    """One line naming an outage for the log (no traceback: the cause is outside this process). For a
    statement, the driver's error alone: never the statement or its parameters."""
    if isinstance(error, sa_exc.StatementError) and error.orig is not None:
        error = error.orig.__cause__ or error.orig  # asyncpg's own error under SQLAlchemy's adaptation
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


async def outlasting_outages(work: Callable[[], Awaitable[T]], *, within: float, what: str) -> T:
    """``work()`` (one whole transaction), run again after a short pause while a backing store is out, for
    up to ``within`` seconds; then the outage is raised as usual.

    For the few writes whose loss costs more than the wait: the record that an email went out, lost, sends
    the email again once its lease runs out. Anything but an outage is raised at once."""
    deadline = time.monotonic() + within
    pause = 0.05
    while True:
        try:
            return await work()
        except BACKING_STORE_ERRORS as error:
            if not is_outage(error) or time.monotonic() + pause > deadline:
                raise
            log.warning(f"{what} met an outage; trying again", extra={"error": describe(error)})
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


class ThrottledWarning:
    """A WARNING logged at most once per ``every_seconds`` per key, saying how many were held back: a store
    that is down for a minute is worth a few lines, not one per request."""

    def __init__(self, logger: logging.Logger, *, every_seconds: float = 10.0) -> None:
        self.logger = logger
        self.every_seconds = every_seconds
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str, **extra: Any) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every_seconds:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        self.logger.warning(message, extra={**extra, "similar_since_last": held})


def redis_client(url: str, settings: ServiceSettings) -> Redis:
    """A Redis client for ``url`` whose pool queues callers when all its connections are busy (for at most
    ``redis_pool_timeout_seconds``, then an outage), with bounded socket timeouts and one quick retry."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
    )
    return Redis.from_pool(pool)
