"""A request's deadline bounds its calls to a peer in total, attempts and backoff included: a stalled peer
costs the caller its budget, never three timeouts plus backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from servicekit.client import ServiceClient, deadline, remaining_seconds
from servicekit.errors import PeerUnavailableError
from servicekit.testing import free_port


@dataclass
class StalledPeer:
    """A peer on a real socket that takes requests and never answers (``/stall``) or is always busy
    (``/busy``, ``503``); it counts what it received."""

    url: str
    calls: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def stalled_peer() -> AsyncIterator[StalledPeer]:
    never = asyncio.Event()
    peer = StalledPeer(url="")

    async def stall(request: web.Request) -> web.Response:
        peer.calls["stall"] = peer.calls.get("stall", 0) + 1
        await never.wait()
        return web.json_response({})  # pragma: no cover - never reached

    async def busy(request: web.Request) -> web.Response:
        peer.calls["busy"] = peer.calls.get("busy", 0) + 1
        return web.json_response({"code": "busy"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/stall", stall)
    app.router.add_route("*", "/busy", busy)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    peer.url = f"http://127.0.0.1:{port}"
    yield peer
    never.set()
    await runner.cleanup()


@pytest.fixture
async def patient_client(stalled_peer: StalledPeer) -> AsyncIterator[ServiceClient]:
    """Per attempt, far more patient than any budget below: three attempts of it would take a minute."""
    client = ServiceClient(
        peer="kit-stalled", base_url=stalled_peer.url, api_key="k", timeout_seconds=20, backoff_seconds=0.05
    )
    yield client
    await client.aclose()


async def test_a_stalled_peer_costs_the_budget_not_the_attempts(
    patient_client: ServiceClient, stalled_peer: StalledPeer
) -> None:
    started = time.monotonic()
    with pytest.raises(PeerUnavailableError) as raised:
        async with deadline(0.3):
            await patient_client.post_json("/stall", {"order": 1}, idempotent=True)
    assert time.monotonic() - started < patient_client.timeout_seconds
    assert raised.value.peer == "kit-stalled"
    assert raised.value.extra == {"peer": "kit-stalled"}
    assert "deadline" in raised.value.detail
    assert stalled_peer.calls["stall"] == 1  # no second attempt once the budget was spent


async def test_no_backoff_sleep_is_started_that_the_budget_cannot_afford(stalled_peer: StalledPeer) -> None:
    client = ServiceClient(peer="kit-busy", base_url=stalled_peer.url, api_key="k", backoff_seconds=30)
    try:
        started = time.monotonic()
        with deadline(1.0), pytest.raises(PeerUnavailableError) as raised:
            await client.get_json("/busy")
        assert time.monotonic() - started < client.backoff_seconds
    finally:
        await client.aclose()
    assert raised.value.peer == "kit-busy"
    assert stalled_peer.calls["busy"] == 1


async def test_without_a_deadline_a_busy_peer_gets_every_attempt(stalled_peer: StalledPeer) -> None:
    client = ServiceClient(peer="kit-busy", base_url=stalled_peer.url, api_key="k", backoff_seconds=0.01)
    try:
        assert remaining_seconds() is None
        with pytest.raises(PeerUnavailableError):
            await client.get_json("/busy")
    finally:
        await client.aclose()
    assert stalled_peer.calls["busy"] == client.attempts


async def test_a_spent_deadline_sends_nothing(
    patient_client: ServiceClient, stalled_peer: StalledPeer
) -> None:
    with deadline(0), pytest.raises(PeerUnavailableError):
        await patient_client.get_json("/stall")
    assert "stall" not in stalled_peer.calls


def test_nested_deadlines_keep_the_earlier_one() -> None:
    with deadline(60) as outer:
        with deadline(0.5) as inner:
            assert inner < outer
            left = remaining_seconds()
            assert left is not None
            assert left <= 0.5
        with deadline(3600) as longer:
            assert longer == outer  # an inner block cannot extend its request's budget
        left = remaining_seconds()
        assert left is not None
        assert 0.5 < left <= 60
    assert remaining_seconds() is None
