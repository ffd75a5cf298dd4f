"""The typed client one service uses to call another.

One shared connection pool per peer, aiohttp's: a plain ``httpx`` pool collapses under concurrency on this
kind of machine, and even httpx over aiohttp's pool (httpx-aiohttp, with OpenTelemetry's httpx
instrumentation) spends more CPU per call than the call itself (``make bench`` measures the variants). So
requests go to aiohttp directly, with one client span per request and ``traceparent`` propagated, and the
answer comes back as an ``httpx.Response`` (the API callers code against). A ``transport`` given explicitly
(tests, stand-ins) is used through httpx instead.

Every request carries the API key. Idempotent requests are retried with exponential backoff and jitter on
connection errors and 502/503/504. A peer's problem+json comes back as the same typed
:class:`~servicekit.errors.DomainError` the peer raised, so errors stay typed across hops; a peer refusing
our own key (401/403) is :class:`PeerRejectedError`, an outage :class:`PeerUnavailableError`.

A call made under a :func:`deadline` (a budget for the whole request that makes it, attempts and backoff
included) never outlives it: each attempt waits at most the time left, and no attempt or backoff sleep starts
once it is spent; the call is then :class:`PeerUnavailableError`. Without one, each attempt has the peer's
``timeout_seconds``.

A peer is trusted for its job, not for anything: an answer body over ``max_response_bytes`` is not read
(:class:`~servicekit.errors.PeerAnswerInvalidError`), ``answer_as`` checks an answer against the model the
caller expects, and every error raised here is marked with the peer it came from, so this service's error
handler never forwards it to its own callers as the peer wrote it (``servicekit.errors``).
"""

from __future__ import annotations

import asyncio
import functools
import json as jsonlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import httpx
from opentelemetry import propagate, trace
from pydantic import BaseModel, SecretStr, ValidationError

from servicekit.errors import (
    DomainError,
    PeerAnswerInvalidError,
    PeerRejectedError,
    PeerUnavailableError,
    peer_error_class,
)
from servicekit.telemetry import instrument_httpx_client, tracer_provider
from servicekit.workers import backoff_delay

log = logging.getLogger("servicekit.client")
ModelT = TypeVar("ModelT", bound=BaseModel)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})
MAX_CONNECTIONS = 100
MAX_RESPONSE_BYTES = 64 * 1024
"""The largest answer body read from a peer by default (``PeerSettings.max_response_bytes``): every answer
between the services is a few hundred bytes; a peer answering megabytes is broken or hostile, and is not read
into memory."""
_CHUNK_BYTES = 16 * 1024
_DECODED = frozenset({b"content-encoding", b"content-length"})
"""Headers that describe the body as sent, dropped once it is read (decompressed)."""
MAX_PEER_TEXT = 300
"""How much of a peer's problem ``code`` and ``detail`` is kept (for logs; callers never see them)."""


class _OutOfTime(TimeoutError):
    """The request's deadline ended an attempt (or came before it)."""


_TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, httpx.TransportError)


_DEADLINE: ContextVar[float | None] = ContextVar("servicekit_request_deadline", default=None)
"""When (``time.monotonic()``) the budget of the current request's calls to peers runs out; ``None``: no
budget beyond each attempt's own timeout."""


class RequestDeadline:
    """The context of :func:`deadline` (``with`` or ``async with``); restores the enclosing one on exit."""

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._token: Token[float | None] | None = None

    def __enter__(self) -> float:
        due = time.monotonic() + self._seconds
        enclosing = _DEADLINE.get()
        if enclosing is not None and enclosing < due:
            due = enclosing
        self._token = _DEADLINE.set(due)
        return due

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)
            self._token = None

    async def __aenter__(self) -> float:
        return self.__enter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(kind, error, tb)


def deadline(seconds: float) -> RequestDeadline:
    """Run the peer calls made inside the block under one budget of ``seconds`` in total, attempts and
    backoff included (within an enclosing deadline that ends earlier, that one holds)."""
    return RequestDeadline(seconds)


def remaining_seconds() -> float | None:
    """What is left of the current deadline (``0`` or less: spent); ``None`` outside any."""
    due = _DEADLINE.get()
    return None if due is None else due - time.monotonic()


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
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.peer = peer
        self.max_response_bytes = max_response_bytes
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
        (by order id, event id or ``Idempotency-Key``) so it is retried too. Every error raised has ``peer``
        set (see :attr:`DomainError.peer`).
        """
        try:
            return await self._request(
                method, path, json=json, params=params, headers=headers, idempotent=idempotent
            )
        except DomainError as error:
            error.peer = self.peer
            raise

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        idempotent: bool | None,
    ) -> httpx.Response:
        method = method.upper()
        retry = idempotent if idempotent is not None else method in IDEMPOTENT_METHODS
        attempts = self.attempts if retry else 1
        body = None if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        due = _DEADLINE.get()
        send = functools.partial(self._send, method, path, body=body, params=params, headers=headers)
        attempt = 1
        while True:
            failure: BaseException | None = None
            try:
                response = await (send() if due is None else self._send_before(due, send))
            except _TRANSPORT_ERRORS as exc:
                failure = exc
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    break
            delay = backoff_delay(
                attempt, base_seconds=self.backoff_seconds, max_seconds=self.backoff_seconds * 20
            ).total_seconds()
            if attempt >= attempts or (due is not None and time.monotonic() + delay >= due):
                if failure is None:
                    break  # the retryable answer is the peer's last word
                raise self._unreachable(failure) from failure
            await asyncio.sleep(delay)
            attempt += 1
        if response.is_success:
            return response
        raise self._error_from(response)

    def _unreachable(self, failure: BaseException) -> PeerUnavailableError:
        if isinstance(failure, _OutOfTime):
            return PeerUnavailableError(
                f"{self.peer} did not answer within the request's deadline.", extra={"peer": self.peer}
            )
        return PeerUnavailableError(
            f"{self.peer} is unreachable ({type(failure).__name__}).", extra={"peer": self.peer}
        )

    async def _send_before(self, due: float, send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
        """One attempt (``send``) that ends by ``due`` at the latest (``_OutOfTime`` then, or at once if it
        is past)."""
        left = due - time.monotonic()
        if left <= 0:
            raise _OutOfTime
        if left >= self.timeout_seconds:  # the attempt's own timeout ends it first
            return await send()
        try:
            async with asyncio.timeout(left):
                return await send()
        except TimeoutError as exc:
            raise _OutOfTime from exc

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
                request = self.http.build_request(
                    method, path, content=body, params=tuple(_query(params or {})), headers=sent
                )
                streamed = await self.http.send(request, stream=True)
                try:
                    content = await self._bounded(streamed.headers, streamed.aiter_bytes(_CHUNK_BYTES))
                finally:
                    await streamed.aclose()
                headers_read = [
                    (name, value) for name, value in streamed.headers.raw if name.lower() not in _DECODED
                ]
                response = httpx.Response(
                    streamed.status_code, headers=headers_read, content=content, request=request
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
                    try:
                        if answer.content_length is not None and "Content-Encoding" not in answer.headers:
                            if answer.content_length > self.max_response_bytes:
                                raise self._too_large()
                            content = await answer.read()  # exactly Content-Length bytes
                        else:
                            content = await self._bounded(
                                answer.headers, answer.content.iter_chunked(_CHUNK_BYTES)
                            )
                    except PeerAnswerInvalidError:
                        answer.close()  # the rest is never read: the connection is not reused
                        raise
                raw_headers = answer.raw_headers
                if "Content-Encoding" in answer.headers:  # ``content`` is decompressed already
                    raw_headers = tuple((n, v) for n, v in raw_headers if n.lower() not in _DECODED)
                # With the request it answers (the URL as sent, query included), as httpx's own responses
                # have: ``response.request``, ``raise_for_status()`` and httpx's messages need it.
                sent_as = httpx.Request(method, str(answer.url), headers=sent)
                response = httpx.Response(
                    answer.status, headers=raw_headers, content=content, request=sent_as
                )
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

    def _too_large(self) -> PeerAnswerInvalidError:
        return PeerAnswerInvalidError.of(
            self.peer,
            f"more than {self.max_response_bytes} bytes",
            max_response_bytes=self.max_response_bytes,
        )

    async def _bounded(self, headers: Mapping[str, str], chunks: AsyncIterator[bytes]) -> bytes:
        """The body, read chunk by chunk (decompressed, if the peer compressed it) up to the limit."""
        length = headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_response_bytes and "Content-Encoding" not in headers:
            raise self._too_large()
        received = bytearray()
        async for chunk in chunks:
            received += chunk
            if len(received) > self.max_response_bytes:
                raise self._too_large()
        return bytes(received)

    def answer_as(self, model: type[ModelT], response_body: Any) -> ModelT:
        """``response_body`` (decoded JSON) as ``model``, or :class:`PeerAnswerInvalidError` (marked with
        this peer) when it is not one: a peer's malformed answer is its failure, never a 500 here."""
        try:
            return model.model_validate(response_body)
        except ValidationError as exc:
            error = self.invalid_answer(f"not a {model.__name__} ({exc.error_count()} problems)")
            raise error from exc

    def invalid_answer(self, reason: str) -> PeerAnswerInvalidError:
        """The error for an answer of this peer the caller cannot use (its ``reason`` is logged, not shown)."""
        return PeerAnswerInvalidError.of(self.peer, reason)

    async def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self._json(await self.request("GET", path, params=params))

    async def post_json(
        self,
        path: str,
        json: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        response = await self.request("POST", path, json=json, headers=headers, idempotent=idempotent)
        return self._json(response) if response.content else None

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:  # not JSON, or not UTF-8
            raise self.invalid_answer("not JSON") from exc

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
        code = str(problem.get("code", ""))[:MAX_PEER_TEXT]
        detail = str(problem.get("detail") or response.reason_phrase)[:MAX_PEER_TEXT]
        if response.status_code in (401, 403):
            # This service's own misconfiguration (its key, or the key's scopes): reported to the caller as
            # such, in this service's words; what the peer said goes to the log only.
            log.warning(
                "%s refused this service's credentials",
                self.peer,
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_detail": detail},
            )
            return PeerRejectedError(
                f"{self.peer} refused this service's credentials ({response.status_code}).",
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_code": code or None},
            )
        if response.status_code >= 500:
            return PeerUnavailableError(
                f"{self.peer} answered {response.status_code}: {detail}",
                extra={"peer": self.peer, "peer_status": response.status_code},
            )
        title = str(problem.get("title") or "")[:MAX_PEER_TEXT]
        error_class = peer_error_class(code, status=response.status_code, title=title) if code else None
        if error_class is None:
            log.warning(
                "%s answered %s with no error this service knows",
                self.peer,
                response.status_code,
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_detail": detail},
            )
            return PeerRejectedError(
                f"{self.peer} refused the request ({response.status_code}).",
                extra={"peer": self.peer, "peer_status": response.status_code, "peer_code": code or None},
            )
        return error_class.from_problem(problem)
