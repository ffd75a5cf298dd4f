"""Rate limits per client and per route class, with the ``limits`` library's async API.

Counters live in Redis when the service has ``REDIS_URL`` (so they hold across replicas), in process memory
in the embedded single-node mode. A limit is a string like ``"30/minute"``; exceeding it raises
:class:`~servicekit.errors.RateLimitedError` (``429`` with ``Retry-After``).

The client is identified by its IP. Behind a reverse proxy or a server-side frontend every request comes
from the proxy's address, so ``X-Forwarded-For`` is honoured only when the direct peer is one of the
configured trusted proxies; then the right-most address that is not itself a trusted proxy is the client.

Limits count a client *network*, not an exact address (:func:`client_network`): an IPv6 client is its /64
(one subscriber's LAN hands out addresses from a whole /64, so counting exact addresses lets one client be
sixty), an IPv4 client its address (a /32; ``client_ipv4_prefix`` widens it), and an IPv4-mapped IPv6 address
counts as the IPv4 address it maps.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from functools import lru_cache

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from servicekit.backing import BACKING_STORE_ERRORS, ThrottledWarning, describe, is_outage
from servicekit.errors import BackingStoreUnavailableError, RateLimitedError
from servicekit.settings import ClientNetworkSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("servicekit.ratelimit")
_store_down = ThrottledWarning(log)

MAX_CLIENT_KEY_LENGTH = 45
"""Room a client network takes where it is stored (``2001:db8:1:2::/64``; an IPv6 text with a prefix fits)."""


class RateLimiter:
    """Moving-window limits keyed by ``(name, identifier)``, counted in ``redis`` (its connection pool is
    shared) or, without it, in process memory.

    When Redis is unavailable, each call says what to do (``fail_open``): let the request through (counted in
    ``ratelimit_fail_open_total{limit}`` and logged as a throttled WARNING), or refuse it with ``503
    backing_store_unavailable`` where the limit is what protects a secret (README, Security).
    """

    def __init__(
        self, *, redis: Redis | None, namespace: str, registry: CollectorRegistry | None = None
    ) -> None:
        storage: Storage
        if redis is not None:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"ratelimit:{namespace}",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed too narrowly
            )
        else:
            storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}
        self.fail_open_total = Counter(
            "ratelimit_fail_open_total",
            "Requests let through unchecked because the rate-limit store (Redis) was unavailable",
            ["limit"],
            registry=registry if registry is not None else CollectorRegistry(),
        )

    def _item(self, limit: str) -> RateLimitItem:
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = parse(limit)
        return item

    async def hit(self, *, name: str, identifier: str, limit: str, fail_open: bool) -> None:
        """Count one request of ``identifier`` against ``limit``; raise ``RateLimitedError`` past it. With
        Redis unavailable: return (``fail_open``) or raise ``BackingStoreUnavailableError``."""
        item = self._item(limit)
        try:
            if await self._limiter.hit(item, name, identifier):
                return
            stats = await self._limiter.get_window_stats(item, name, identifier)
        except BACKING_STORE_ERRORS as exc:
            if not is_outage(exc):
                raise
            if not fail_open:
                _store_down.warn(
                    f"closed:{name}",
                    "rate-limit store unavailable: refusing requests this limit protects",
                    limit=name,
                    error=describe(exc),
                )
                raise BackingStoreUnavailableError() from exc
            self.fail_open_total.labels(limit=name).inc()
            _store_down.warn(
                f"open:{name}",
                "rate-limit store unavailable: letting requests through unlimited",
                limit=name,
                error=describe(exc),
            )
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimitedError(
            f"Too many requests ({limit}); try again in {retry_after} s.", retry_after_seconds=retry_after
        )


def parse_networks(values: Sequence[str]) -> list[Network]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def parse_trusted_proxies(values: Sequence[str], *, variable: str) -> list[Network]:
    """The networks of the ``variable`` setting; a ``ValueError`` naming it for one that is not a network."""
    try:
        return parse_networks(values)
    except ValueError as exc:
        raise ValueError(f"{variable}: {exc}") from None


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


def client_network(address: str, *, ipv4_prefix: int = 32, ipv6_prefix: int = 64) -> str:
    """The client as per-client limits count it: an IPv4 address (or its ``/ipv4_prefix`` network when
    narrower than 32), an IPv6 address's ``/ipv6_prefix`` network (``2001:db8:1:2::/64``), an IPv4-mapped
    IPv6 address as the IPv4 address it maps. Equal clients give equal text whatever their spelling. A peer
    that is not an IP address (a Unix socket, a test client) is kept as it is, cut to the stored length."""
    return _client_network(address, ipv4_prefix, ipv6_prefix)


@lru_cache(maxsize=4096)
def _client_network(address: str, ipv4_prefix: int, ipv6_prefix: int) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_CLIENT_KEY_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        if ipv4_prefix >= 32:
            return str(ip)
        return str(ipaddress.IPv4Network((ip, ipv4_prefix), strict=False))
    if ipv6_prefix >= 128:
        return str(ip)
    return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))


def client_key(
    request: Request, *, trusted_proxies: Sequence[Network], settings: ClientNetworkSettings
) -> str:
    """The client network of a request (:func:`client_ip`, then :func:`client_network`): what every
    per-client limit counts."""
    return client_network(
        client_ip(request, trusted_proxies=trusted_proxies),
        ipv4_prefix=settings.client_ipv4_prefix,
        ipv6_prefix=settings.client_ipv6_prefix,
    )


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
