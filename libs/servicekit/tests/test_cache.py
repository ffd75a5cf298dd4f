"""The expiring cache, in process memory and in a real Redis (shared by every instance on it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from servicekit.cache import ExpiringCache
from servicekit.testing import eventually


@pytest.fixture(params=["memory", "redis"])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis | None]:
    if request.param == "memory":
        yield None
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        yield client
    finally:
        await client.aclose()


async def test_entries_are_kept_forgotten_and_expire(redis: Redis | None) -> None:
    cache = ExpiringCache(redis=redis, namespace="kit", ttl_seconds=0.3)
    assert await cache.get("401") is None
    await cache.put("401", '{"name": "Anna"}')
    await cache.put("666", "")
    assert (await cache.get("401"), await cache.get("666")) == ('{"name": "Anna"}', "")
    await cache.forget("401")
    assert await cache.get("401") is None

    async def still_there() -> str | None:
        return await cache.get("666")

    await eventually(still_there, until=lambda value: value is None, within=5.0, message="the entry expires")


async def test_instances_on_one_redis_share_entries_and_a_zero_lifetime_keeps_nothing(
    redis_url: str,
) -> None:
    client = Redis.from_url(redis_url)
    try:
        one, two = (ExpiringCache(redis=client, namespace="kit", ttl_seconds=60) for _ in range(2))
        await one.put("401", "Anna")
        assert await two.get("401") == "Anna"
        await two.forget("401")
        assert await one.get("401") is None
        off = ExpiringCache(redis=client, namespace="kit", ttl_seconds=0)
        await off.put("402", "Boris")
        assert await off.get("402") is None
    finally:
        await client.aclose()
