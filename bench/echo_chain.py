"""The two services of the echo chain, each run as its own uvicorn process by ``transports.py``.

``b`` answers ``GET /echo`` with a small JSON echo and counts requests carrying ``traceparent``
(``GET /stats``). ``a`` answers ``GET /chain`` by calling ``b`` through the client under test.

Usage: ``python bench/echo_chain.py b --port P`` or
``python bench/echo_chain.py a --port P --peer http://127.0.0.1:Q --client httpx-aiohttp``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import uvicorn
from fastapi import FastAPI, Request

CLIENTS = (
    "httpx",
    "httpx-aiohttp",
    "httpx-aiohttp-otel",
    "aiohttp",
    "aiohttp-otel",
    "aiohttp-span",
    "servicekit",
)
MAX_CONNECTIONS = 100  # as servicekit.client's pool
HOST = "127.0.0.1"
PEER_TIMEOUT_SECONDS = 5.0

EchoCall = Callable[[], Awaitable[Any]]


@dataclass
class EchoStats:
    """What service B has seen since it started."""

    requests: int = 0
    traceparent: int = 0


def build_b() -> FastAPI:
    """Service B: a small JSON echo that counts ``traceparent`` headers."""
    stats = EchoStats()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/echo")
    async def echo(request: Request, msg: str = "ping") -> dict[str, str]:
        stats.requests += 1
        if "traceparent" in request.headers:
            stats.traceparent += 1
        return {"service": "b", "msg": msg}

    @app.get("/stats")
    async def read_stats() -> dict[str, int]:
        return {"requests": stats.requests, "traceparent": stats.traceparent}

    return app


def pooled_transport(max_connections: int = MAX_CONNECTIONS) -> httpx.AsyncBaseTransport:
    """An httpx transport over aiohttp's connection pool (httpx-aiohttp, a dev dependency: the bench only)."""
    from httpx_aiohttp import AiohttpTransport

    return AiohttpTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )


def _httpx_client(kind: str, peer: str) -> httpx.AsyncClient:
    """One shared httpx client: default pool for ``httpx``, ``pooled_transport()`` otherwise."""
    if kind == "httpx":
        return httpx.AsyncClient(base_url=peer, timeout=PEER_TIMEOUT_SECONDS)
    client = httpx.AsyncClient(base_url=peer, transport=pooled_transport(), timeout=PEER_TIMEOUT_SECONDS)
    if kind == "httpx-aiohttp-otel":
        from servicekit.telemetry import configure_tracing, instrument_httpx_client

        configure_tracing(service="bench-a", sample_ratio=1.0, otlp_endpoint=None)
        instrument_httpx_client(client)
    return client


def _aiohttp_session(kind: str, peer: str) -> aiohttp.ClientSession:
    """aiohttp's pool as ServiceClient sets it up; ``aiohttp-otel`` adds OpenTelemetry's official aiohttp
    client instrumentation (a client span and ``traceparent`` per request, from aiohttp's trace hooks)."""
    trace_configs: list[aiohttp.TraceConfig] = []
    if kind != "aiohttp":
        from servicekit.telemetry import configure_tracing

        provider = configure_tracing(service="bench-a", sample_ratio=1.0, otlp_endpoint=None)
        if kind == "aiohttp-otel":
            from opentelemetry.instrumentation.aiohttp_client import create_trace_config

            trace_configs.append(create_trace_config(tracer_provider=provider))
    return aiohttp.ClientSession(
        base_url=peer,
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_SECONDS),
        trace_configs=trace_configs,
    )


def _aiohttp_call(kind: str, session: aiohttp.ClientSession) -> EchoCall:
    """B's echo over ``session``; ``aiohttp-span`` wraps it in a span made by hand, as ServiceClient does."""

    async def call() -> Any:
        async with session.get("/echo", params={"msg": "hello"}) as response:
            response.raise_for_status()
            return await response.json()

    if kind != "aiohttp-span":
        return call
    from opentelemetry import propagate, trace

    from servicekit.telemetry import tracer_provider

    tracer = trace.get_tracer("bench.aiohttp", tracer_provider=tracer_provider())

    async def call_in_span() -> Any:
        with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT) as span:
            headers: dict[str, str] = {}
            propagate.inject(headers)
            async with session.get("/echo", params={"msg": "hello"}, headers=headers) as response:
                response.raise_for_status()
                body = await response.json()
            span.set_attributes({"http.request.method": "GET", "http.response.status_code": response.status})
            return body

    return call_in_span


def build_a(kind: str, peer: str) -> FastAPI:
    """Service A: ``GET /chain`` calls B's ``/echo`` through the client ``kind``."""
    if kind not in CLIENTS:
        raise ValueError(f"unknown client {kind!r}")
    call_b: EchoCall | None = None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal call_b
        if kind.startswith("aiohttp"):
            session = _aiohttp_session(kind, peer)
            call_b = _aiohttp_call(kind, session)
            try:
                yield
            finally:
                await session.close()
        elif kind == "servicekit":
            from servicekit.client import ServiceClient
            from servicekit.telemetry import configure_tracing

            configure_tracing(service="bench-a", sample_ratio=1.0, otlp_endpoint=None)
            service_client = ServiceClient(
                peer="bench-b", base_url=peer, api_key="bench", timeout_seconds=PEER_TIMEOUT_SECONDS
            )

            async def call_service_client() -> Any:
                return await service_client.get_json("/echo", params={"msg": "hello"})

            call_b = call_service_client
            try:
                yield
            finally:
                await service_client.aclose()
        else:
            client = _httpx_client(kind, peer)

            async def call_httpx() -> Any:
                response = await client.get("/echo", params={"msg": "hello"})
                response.raise_for_status()
                return response.json()

            call_b = call_httpx
            try:
                yield
            finally:
                await client.aclose()

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "client": kind}

    @app.get("/chain")
    async def chain() -> dict[str, Any]:
        assert call_b is not None  # noqa: S101 - set by the lifespan before any request
        return {"service": "a", "client": kind, "b": await call_b()}

    return app


def _exit_with_parent() -> None:
    """Terminate this process if the bench that started it dies (no orphaned servers)."""
    parent = os.getppid()

    def watch() -> None:
        for _ in range(24 * 3600 * 2):  # bounded: half a second per check, at most a day
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Run service A or B on loopback until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("service", choices=("a", "b"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--peer", help="base URL of service B (service A only)")
    parser.add_argument("--client", choices=CLIENTS, default=os.environ.get("BENCH_CLIENT", "httpx"))
    args = parser.parse_args(argv)
    if args.service == "a" and not args.peer:
        parser.error("service a needs --peer")
    app = build_b() if args.service == "b" else build_a(args.client, args.peer)
    _exit_with_parent()
    uvicorn.run(app, host=HOST, port=args.port, workers=1, log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
