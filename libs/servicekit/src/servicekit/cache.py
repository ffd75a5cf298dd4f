"""A small expiring cache of text values: in Redis when the service has ``REDIS_URL`` (shared by its
replicas, so one replica's invalidation holds for all), in process memory in the embedded single-node mode.

A cache is never the truth: a miss (or Redis being flushed) only costs asking the owner again. So Redis
being unavailable is a miss: ``get`` answers nothing, ``put`` and ``forget`` do nothing (an entry that could
not be forgotten lives out its ``ttl_seconds``), and a throttled WARNING says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import TypeVar

from redis.asyncio import Redis

from servicekit.backing import BACKING_STORE_ERRORS, ThrottledWarning, describe, is_outage

T = TypeVar("T")
log = logging.getLogger("servicekit.cache")
_store_down = ThrottledWarning(log)


class ExpiringCache:
    """``get``/``put``/``forget`` of text under ``namespace``; every entry lives ``ttl_seconds`` at most
    (``0`` caches nothing)."""

    def __init__(self, *, redis: Redis | None, namespace: str, ttl_seconds: float) -> None:
        self._redis = redis
        self._namespace = namespace
        self.ttl_seconds = ttl_seconds
        self._memory: dict[str, tuple[float, str]] = {}

    async def _fail_open(self, command: Awaitable[T], fallback: T) -> T:
        """``command``'s answer, or ``fallback`` while Redis is unavailable."""
        try:
            return await command
        except BACKING_STORE_ERRORS as exc:
            if not is_outage(exc):
                raise
            _store_down.warn(
                self._namespace,
                "cache store unavailable: treated as a miss",
                cache=self._namespace,
                error=describe(exc),
            )
            return fallback

    def _key(self, key: str) -> str:
        return f"cache:{self._namespace}:{key}"

    async def get(self, key: str) -> str | None:
        if self.ttl_seconds <= 0:
            return None
        if self._redis is not None:
            value: bytes | str | None = await self._fail_open(self._redis.get(self._key(key)), None)
            return value.decode() if isinstance(value, bytes) else value
        entry = self._memory.get(key)
        if entry is None:
            return None
        expires, text = entry
        if expires <= time.monotonic():
            del self._memory[key]
            return None
        return text

    async def put(self, key: str, value: str) -> None:
        if self.ttl_seconds <= 0:
            return
        if self._redis is not None:
            ttl_ms = max(1, int(self.ttl_seconds * 1000))
            await self._fail_open(self._redis.set(self._key(key), value, px=ttl_ms), None)
            return
        now = time.monotonic()
        if len(self._memory) > 10_000:  # the embedded mode's bound: drop what has expired
            self._memory = {k: e for k, e in self._memory.items() if e[0] > now}
        self._memory[key] = (now + self.ttl_seconds, value)

    async def forget(self, key: str) -> None:
        if self._redis is not None:
            await self._fail_open(self._redis.delete(self._key(key)), None)
        self._memory.pop(key, None)
