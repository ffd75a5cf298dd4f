"""The typed client one service uses to call another.

One shared connection pool per peer, aiohttp's: a plain ``httpx`` pool collapses under concurrency on this
kind of machine, and even httpx over aiohttp's pool (``pooled_transport``, with OpenTelemetry's httpx
instrumentation) spends more CPU per call than the call itself (``make bench`` measures the variants). So
requests go to aiohttp directly, with one client span per request and ``traceparent`` propagated, and the
answer comes back as an ``httpx.Response`` (the API callers code against). A ``transport`` given explicitly
(tests, stand-ins) is used through httpx instead.

Every request carries the API key. Idempotent requests are retried with exponential backoff and jitter on
connection errors and 502/503/504. A peer's problem+json comes back as the same typed
:class:`~servicekit.errors.DomainError` the peer raised, so errors stay typed across hops; a peer refusing
our own key (401/403) is :class:`PeerRejectedError`, an outage :class:`PeerUnavailableError`.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from opentelemetry import propagate, trace
from pydantic import SecretStr

from servicekit.errors import DomainError, PeerRejectedError, PeerUnavailableError, error_for_code
from servicekit.telemetry import instrument_httpx_client, tracer_provider
from servicekit.workers import backoff_delay

log = logging.getLogger("servicekit.client")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})
MAX_CONNECTIONS = 100
_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, httpx.TransportError)


def pooled_transport(max_connections: int = MAX_CONNECTIONS) -> httpx.AsyncBaseTransport:
    """An httpx transport over aiohttp's connection pool, for code that wants an ``httpx.AsyncClient``."""
    return AiohttpTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )


def _query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters spelled as httpx spells them (``true``/``false``, ``None`` as empty, lists repeated)."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else (value,):
            text = "true" if item is True else "false" if item is False else "" if item is None else str(item)
            pairs.append((name, text))
    return pairs


class ServiceClient:
    """Calls one peer service. Create one per peer at startup, close it at shutdown."""

    def __init__(
        self,
        *,
        peer: str,
        base_url: str,
        api_key: SecretStr | str,
        timeout_seconds: float = 5.0,
        attempts: int = 3,
        backoff_seconds: float = 0.1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.peer = peer
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self.headers = {"Authorization": f"Bearer {key}", "User-Agent": f"exchange-desk/{peer}-client"}
        self._session: aiohttp.ClientSession | None = None
        self._tracer: trace.Tracer | None = None  # resolved at the first request, once tracing is configured
        #: Only with an explicit ``transport``: requests then go through httpx (instrumented as usual).
        self.http: httpx.AsyncClient | None = None
        if transport is not None:
            self.http = httpx.AsyncClient(
                base_url=base_url,
                transport=transport,
                timeout=httpx.Timeout(timeout_seconds),
                headers=self.headers,
            )
            instrument_httpx_client(self.http)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.http is not None:
            await self.http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request; return the 2xx response or raise the typed error the peer answered with.

        ``idempotent`` defaults to the method's semantics; pass ``True`` for a POST the peer deduplicates
        (by order id, event id or ``Idempotency-Key``) so it is retried too.
        """
        method = method.upper()
        retry = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        attempts = self.attempts if retry else 1
        body = None if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        attempt = 1
        while True:
            try:
                response = await self._send(method, path, body=body, params=params, headers=headers)
            except _TRANSPORT_ERRORS as exc:
                if attempt >= attempts:
                    raise PeerUnavailableError(
                        f"{self.peer} is unreachable ({type(exc).__name__}).", extra={"peer": self.peer}
                    ) from exc
            else:
                if response.status_code not in RETRYABLE_STATUSES or attempt >= attempts:
                    break
            delay = backoff_delay(
                attempt, base_seconds=self.backoff_seconds, max_seconds=self.backoff_seconds * 20
            )
            await asyncio.sleep(delay.total_seconds())
            attempt += 1
        if response.is_success:
            return response
        raise self._error_from(response)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        """One attempt, in its own client span; the peer continues the trace (``traceparent``)."""
        sent = {**self.headers, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        url = self.base_url + path
        if self._tracer is None:
            self._tracer = trace.get_tracer("servicekit.client", tracer_provider=tracer_provider())
        with self._tracer.start_as_current_span(method, kind=trace.SpanKind.CLIENT) as span:
            propagate.inject(sent)
            if self.http is not None:
                response = await self.http.request(
                    method, path, content=body, params=tuple(_query(params or {})), headers=sent
                )
            else:
                session = self._session
                if session is None or session.closed:
                    session = self._session = aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                        timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                        auto_decompress=True,
                    )
                async with session.request(
                    method, url, data=body, params=_query(params) if params else None, headers=sent
                ) as answer:
                    content = await answer.read()
                # Without an ``httpx.Request``: building one parses the URL again, half of this wrapping's
                # cost on every call, and nothing reads it (``raise_for_status`` is not how peers' errors
                # are raised here; ``_error_from`` is).
                response = httpx.Response(answer.status, headers=answer.raw_headers, content=content)
            if span.is_recording():
                span.set_attributes(
                    {
                        "http.request.method": method,
                        "url.full": url,
                        "server.peer": self.peer,
                        "http.response.status_code": response.status_code,
                    }
                )
                if response.status_code >= 500:
                    span.set_status(trace.StatusCode.ERROR)
            return response

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return (await self.request("GET", path, params=params)).json()

    async def post_json(
        self,
        path: str,
        json: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        response = await self.request("POST", path, json=json, headers=headers, idempotent=idempotent)
        return response.json() if response.content else None

    def _error_from(self, response: httpx.Response) -> DomainError:
        problem: dict[str, Any] = {}
        if response.headers.get("content-type", "").startswith(
            ("application/problem+json", "application/json")
        ):
            try:
                body = response.json()
                problem = body if isinstance(body, dict) else {}
            except ValueError:
                problem = {}
        code = str(problem.get("code", ""))
        detail = str(problem.get("detail") or response.reason_phrase)
        if response.status_code in (401, 403):
            return PeerRejectedError(
                f"{self.peer} refused this service's credentials: {detail}",
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_code": code or None},
            )
        if response.status_code >= 500:
            return PeerUnavailableError(
                f"{self.peer} answered {response.status_code}: {detail}",
                extra={"peer": self.peer, "peer_status": response.status_code},
            )
        error_class = error_for_code(code) if code else None
        if error_class is None:
            return PeerRejectedError(
                f"{self.peer} answered {response.status_code}: {detail}",
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_code": code or None},
            )
        return error_class.from_problem(problem)
