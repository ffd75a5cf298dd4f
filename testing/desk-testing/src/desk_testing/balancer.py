"""What stands in front of a service's replicas, as a Kubernetes Service or an Ingress does: one address for the
service, every request to the next replica in turn.

A replica that refuses the connection (it is down) is skipped for the next; one that dies while answering takes
the caller's connection with it (the caller sees no answer, as behind a real load balancer). The balancer also
keeps the id of every event a replica acknowledged (``POST /v1/events`` and ``/v1/events/batch``), so a test can
tell how many times its receiver was handed each one."""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from servicekit.testing import ServiceProcess

HOP_BY_HOP = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade", "trailer"}
)


@dataclass
class RoundRobin:
    """One service's address (``port``) spreading requests over ``replicas``."""

    port: int
    replicas: list[ServiceProcess]
    answered: Counter[str] = field(default_factory=Counter)
    """Requests answered, per replica URL."""
    events: Counter[str] = field(default_factory=Counter)
    """Event ids the service's replicas acknowledged (2xx), with how many times each was."""

    def __post_init__(self) -> None:
        self._turn = 0
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RoundRobin:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        # a connection per request, as a Service's connection tracking gives: a replica killed meanwhile is
        # found refusing (and skipped), never behind a kept-alive connection it no longer answers on
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=2),
        )
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def _next(self) -> list[ServiceProcess]:
        """The replicas in the order to try them: the next in turn first."""
        start = self._turn % len(self.replicas)
        self._turn += 1
        return self.replicas[start:] + self.replicas[:start]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for replica in self._next():
            try:
                async with self._http.request(
                    request.method,
                    replica.url + request.path_qs,
                    headers=headers,
                    data=body,
                    allow_redirects=False,
                ) as upstream:
                    payload = await upstream.read()
                    answer_headers = {
                        k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP
                    }
                    status = upstream.status
            except aiohttp.ClientConnectorError:
                continue  # down: the next replica
            except aiohttp.ClientError:
                # died while answering: so does the caller's connection
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPBadGateway() from None
            self.answered[replica.url] += 1
            if 200 <= status < 300 and request.method == "POST" and request.path.startswith("/v1/events"):
                self.events.update(_event_ids(body))
            return web.Response(status=status, body=payload, headers=answer_headers)
        return web.Response(status=503, headers={"Retry-After": "1"}, text="no replica is up")


def _event_ids(body: bytes) -> list[str]:
    with contextlib.suppress(ValueError, AttributeError, TypeError, KeyError):
        sent: Any = json.loads(body)
        envelopes = sent.get("events", [sent])
        return [str(envelope["id"]) for envelope in envelopes]
    return []
