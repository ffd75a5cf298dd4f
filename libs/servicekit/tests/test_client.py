"""The service client over a real socket (aiohttp transport): typed errors across hops, retries only where
safe, outages and refusals as their own errors, and the caller's trace continued by the peer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from servicekit.client import ServiceClient
from servicekit.errors import PeerRejectedError, PeerUnavailableError
from servicekit.testing import free_port
from servicekit.testing.kitapps import Peer, StockExhaustedError


@pytest.fixture
async def client(peer: Peer) -> AsyncIterator[ServiceClient]:
    client = ServiceClient(peer="kit-peer", base_url=peer.url, api_key=peer.key, backoff_seconds=0.05)
    yield client
    await client.aclose()


async def calls_seen_by_peer(client: ServiceClient, name: str) -> int:
    calls: int = (await client.get_json(f"/v1/calls/{name}"))["calls"]
    return calls


async def test_a_peers_typed_error_comes_back_as_the_same_class(client: ServiceClient) -> None:
    with pytest.raises(StockExhaustedError) as raised:
        await client.get_json("/v1/stock/BTC-7")
    error = raised.value
    assert type(error) is StockExhaustedError
    assert error.detail == "BTC-7 is sold out until Monday."
    assert error.extra["sku"] == "BTC-7"
    assert error.to_problem()["code"] == "kit_stock_exhausted"


async def test_a_peer_refusing_our_key_or_scope_is_peer_rejected(peer: Peer) -> None:
    for key, status, code in (
        ("kc_" + "x" * 43, 401, "api_key_invalid"),
        (peer.key_without_scope, 403, "scope_missing"),
    ):
        client = ServiceClient(peer="kit-peer", base_url=peer.url, api_key=key)
        try:
            with pytest.raises(PeerRejectedError) as raised:
                await client.get_json("/v1/stock/BTC-7")
        finally:
            await client.aclose()
        assert raised.value.extra == {"peer": "kit-peer", "peer_status": status, "peer_code": code}
        assert raised.value.status == 502


async def test_a_peer_that_is_down_is_peer_unavailable() -> None:
    client = ServiceClient(peer="kit-gone", base_url=f"http://127.0.0.1:{free_port()}", api_key="k")
    try:
        with pytest.raises(PeerUnavailableError) as raised:
            await client.get_json("/v1/anything")
    finally:
        await client.aclose()
    assert raised.value.extra == {"peer": "kit-gone"}
    assert "kit-gone is unreachable" in raised.value.detail


async def test_a_get_is_retried_on_503_until_it_succeeds(client: ServiceClient) -> None:
    name = uuid.uuid4().hex
    assert await client.get_json(f"/v1/flaky/{name}", params={"fail": 2}) == {"calls": 3}
    assert await calls_seen_by_peer(client, name) == 3

    hopeless = uuid.uuid4().hex
    with pytest.raises(PeerUnavailableError):
        await client.get_json(f"/v1/flaky/{hopeless}", params={"fail": 10})
    assert await calls_seen_by_peer(client, hopeless) == client.attempts == 3


async def test_a_post_is_retried_only_when_declared_idempotent(client: ServiceClient) -> None:
    name = uuid.uuid4().hex
    with pytest.raises(PeerUnavailableError):
        await client.request("POST", f"/v1/flaky/{name}", params={"fail": 1})
    assert await calls_seen_by_peer(client, name) == 1

    name = uuid.uuid4().hex
    response = await client.request("POST", f"/v1/flaky/{name}", params={"fail": 1}, idempotent=True)
    assert response.json() == {"calls": 2}
    assert await calls_seen_by_peer(client, name) == 2


async def test_the_peer_continues_the_callers_trace(
    client: ServiceClient, peer: Peer, spans: InMemorySpanExporter
) -> None:
    with trace.get_tracer("kit-caller").start_as_current_span("caller work") as span:
        body = await client.get_json("/v1/trace")
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert body == {"trace_id": trace_id}

    (client_span,) = [
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT and s.context.trace_id == int(trace_id, 16)
    ]
    async with httpx.AsyncClient(base_url=peer.url) as plain:
        recorded = (await plain.get("/test/spans")).json()
    (server_span,) = [s for s in recorded if s["trace_id"] == trace_id]
    assert server_span["kind"] == "SERVER"
    assert server_span["parent_span_id"] == format(client_span.context.span_id, "016x")

    # Written (and flushed) before the peer answered.
    probes = [r for r in peer.process.log_records() if r.get("event") == "trace probe"]
    assert trace_id in {r["trace_id"] for r in probes}
