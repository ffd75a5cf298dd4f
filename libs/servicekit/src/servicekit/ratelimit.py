"""Rate limits per client and per route class, with the ``limits`` library's async API.

Counters live in Redis when the service has ``REDIS_URL`` (so they hold across replicas), in process memory
in the embedded single-node mode. A limit is a string like ``"30/minute"``; exceeding it raises
:class:`~servicekit.errors.RateLimitedError` (``429`` with ``Retry-After``).

The client is identified by its IP. Behind a reverse proxy or a server-side frontend every request comes
from the proxy's address, so ``X-Forwarded-For`` is honoured only when the direct peer is one of the
configured trusted proxies; then the right-most address that is not itself a trusted proxy is the client.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Sequence

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from servicekit.errors import RateLimitedError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RateLimiter:
    """Moving-window limits keyed by ``(name, identifier)``."""

    def __init__(self, *, redis_url: str | None, namespace: str) -> None:
        storage: Storage
        if redis_url:
            storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", key_prefix=f"ratelimit:{namespace}"
            )
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, *, name: str, identifier: str, limit: str) -> None:
        """Count one request of ``identifier`` against ``limit``; raise ``RateLimitedError`` past it."""
        item = self._item(limit)
        if await self._limiter.hit(item, name, identifier):
            return
        stats = await self._limiter.get_window_stats(item, name, identifier)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(
            f"Too many requests ({limit}); try again in {retry_after} s.", retry_after_seconds=retry_after
        )


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def client_ip(request: Request, *, trusted_proxies: Sequence[Network]) -> str:
    """The client's IP address, honouring ``X-Forwarded-For`` only from trusted proxies."""
    peer = request.client.host if request.client else "0.0.0.0"  # noqa: S104 (no peer: unknown client)
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    forwarded = [
        part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()
    ]
    for candidate in reversed(forwarded):
        if not _is_trusted(candidate, trusted_proxies):
            return candidate
    return forwarded[0] if forwarded else peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
