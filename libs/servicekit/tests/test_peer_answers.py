"""A peer is trusted for its job, not for anything: its answer is read up to a size limit, checked against
the model the caller expects, and its errors never reach this service's own callers as the peer wrote them."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from pydantic import BaseModel

from servicekit.client import MAX_RESPONSE_BYTES, ServiceClient
from servicekit.errors import PROBLEM_JSON, PeerAnswerInvalidError, RateLimitedError, install_error_handlers
from servicekit.testing import serve_stand_in

HUGE = 30 * 1024 * 1024
FORGED_DETAIL = "<script>alert(1)</script> slow down for a day"


async def _chunked_flood(request: web.Request) -> web.StreamResponse:
    """30 MB of JSON, streamed without a ``Content-Length``."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b" " * (256 * 1024)
    try:
        await response.write(b"[")
        for _ in range(HUGE // len(chunk)):
            await response.write(chunk)
        await response.write(b"]")
    except ConnectionError:  # the client stopped reading, as it should
        pass
    return response


def hostile_peer() -> web.Application:
    async def big(_request: web.Request) -> web.Response:
        return web.json_response({"padding": "x" * (MAX_RESPONSE_BYTES + 1)})

    async def rate_limited(_request: web.Request) -> web.Response:
        problem = {
            "type": "urn:exchange-desk:problem:rate_limited",
            "title": "Too many requests",
            "status": 429,
            "detail": FORGED_DETAIL,
            "code": "rate_limited",
            "retry_after_seconds": 99999,
        }
        return web.json_response(
            problem, status=429, content_type=PROBLEM_JSON, headers={"Retry-After": "99999"}
        )

    async def not_json(_request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="application/json")

    async def small(_request: web.Request) -> web.Response:
        return web.json_response({"name": "ok"})

    app = web.Application()
    app.router.add_get("/big", big)
    app.router.add_get("/flood", _chunked_flood)
    app.router.add_get("/rate-limited", rate_limited)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/small", small)
    return app


@pytest.fixture
async def peer_url() -> AsyncIterator[str]:
    async with serve_stand_in(hostile_peer()) as url:
        yield url


@pytest.fixture(params=["aiohttp", "httpx"])
async def client(request: pytest.FixtureRequest, peer_url: str) -> AsyncIterator[ServiceClient]:
    """The client as services run it (aiohttp's pool), and through an explicit httpx transport."""
    transport = httpx.AsyncHTTPTransport() if request.param == "httpx" else None
    client = ServiceClient(peer="kit-peer", base_url=peer_url, api_key="k", attempts=1, transport=transport)
    yield client
    await client.aclose()


class Named(BaseModel):
    name: str


@pytest.mark.parametrize("path", ["/big", "/flood"])
async def test_an_answer_over_the_size_limit_is_not_read(client: ServiceClient, path: str) -> None:
    with pytest.raises(PeerAnswerInvalidError) as raised:
        await client.get_json(path)
    assert raised.value.peer == "kit-peer"
    assert raised.value.extra["max_response_bytes"] == MAX_RESPONSE_BYTES
    # the connection is usable again for the next call
    assert client.answer_as(Named, await client.get_json("/small")) == Named(name="ok")


async def test_an_answer_that_is_not_json_or_not_the_model_is_invalid(client: ServiceClient) -> None:
    with pytest.raises(PeerAnswerInvalidError) as not_json:
        await client.get_json("/not-json")
    with pytest.raises(PeerAnswerInvalidError) as wrong_shape:
        client.answer_as(Named, {"name": ["not", "a", "string"]})
    assert (not_json.value.peer, wrong_shape.value.peer) == ("kit-peer", "kit-peer")


async def test_a_peers_problem_is_typed_for_the_caller_but_never_forwarded_as_is(
    client: ServiceClient,
) -> None:
    with pytest.raises(RateLimitedError) as raised:  # the caller's code may still tell what it was ...
        await client.get_json("/rate-limited")
    assert raised.value.peer == "kit-peer"

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/things")
    async def things() -> object:
        return await client.get_json("/rate-limited")  # ... but if it lets it through, the caller sees ours

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as caller:
        response = await caller.get("/v1/things")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert (body["code"], body["retry_after_seconds"]) == ("peer_unavailable", 5)
    assert "99999" not in response.text
    assert FORGED_DETAIL not in json.dumps(body)
    assert "script" not in response.text


async def test_a_compressed_answer_is_read_decompressed_and_a_compressed_flood_is_cut_off(
    client: ServiceClient,
) -> None:
    async def compressed(request: web.Request) -> web.StreamResponse:
        size = int(request.query["size"])
        body = gzip.compress(json.dumps({"name": "x" * size}).encode())
        return web.Response(
            body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    app = web.Application()
    app.router.add_get("/compressed", compressed)
    async with serve_stand_in(app) as url:
        peer = ServiceClient(
            peer="kit-zip",
            base_url=url,
            api_key="k",
            attempts=1,
            transport=httpx.AsyncHTTPTransport() if client.http is not None else None,
        )
        try:
            small = await peer.get_json("/compressed", params={"size": 10})
            assert client.answer_as(Named, small) == Named(name="x" * 10)
            with pytest.raises(PeerAnswerInvalidError):  # 8 MB that compress to a few KB
                await peer.get_json("/compressed", params={"size": 8 * 1024 * 1024})
        finally:
            await peer.aclose()


async def test_an_answer_carries_the_request_it_answers(client: ServiceClient, peer_url: str) -> None:
    """As httpx's own responses do: ``response.request``, ``raise_for_status()`` and httpx's messages work."""
    response = await client.request("GET", "/small", params={"page": 2, "fresh": True})
    assert response.request.method == "GET"
    assert str(response.request.url) == f"{peer_url}/small?page=2&fresh=true"
    assert response.request.headers["authorization"] == "Bearer k"
    assert response.raise_for_status() is response
    assert response.json() == {"name": "ok"}

    teapot = httpx.Response(418, headers=response.headers, content=b"", request=response.request)
    with pytest.raises(httpx.HTTPStatusError, match=r"418 .* for url '.*/small\?page=2&fresh=true'"):
        teapot.raise_for_status()
