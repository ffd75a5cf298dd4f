"""The typed client one service uses to call another.

One shared ``httpx.AsyncClient`` per peer, over the aiohttp transport (``httpx-aiohttp``): a plain httpx
pool collapses under concurrency on this kind of machine, aiohttp's does not, and OpenTelemetry's httpx
instrumentation still propagates ``traceparent`` through it (``make bench`` measures both).

Every request carries the API key. Idempotent requests are retried with exponential backoff and jitter on
connection errors and 502/503/504. A peer's problem+json comes back as the same typed
:class:`~servicekit.errors.DomainError` the peer raised, so errors stay typed across hops; a peer refusing
our own key (401/403) is :class:`PeerRejectedError`, an outage :class:`PeerUnavailableError`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from servicekit.errors import DomainError, PeerRejectedError, PeerUnavailableError, error_for_code
from servicekit.telemetry import instrument_httpx_client

log = logging.getLogger("servicekit.client")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({502, 503, 504})


class _RetryableStatusError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatusError | httpx.TransportError)


def pooled_transport(max_connections: int = 100) -> httpx.AsyncBaseTransport:
    """The transport for service-to-service calls (aiohttp's connection pool behind httpx's API)."""
    return AiohttpTransport(
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    )


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
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self.http = httpx.AsyncClient(
            base_url=base_url,
            transport=transport or pooled_transport(),
            timeout=httpx.Timeout(timeout_seconds),
            headers={"Authorization": f"Bearer {key}", "User-Agent": f"exchange-desk/{peer}-client"},
        )
        instrument_httpx_client(self.http)

    async def aclose(self) -> None:
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
        response: httpx.Response | None = None
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                # Jitter scaled to the backoff (wait_exponential_jitter's is a fixed 0-1 s, ten times the
                # first backoff, and its ``initial`` is deprecated).
                wait=wait_exponential(multiplier=self.backoff_seconds, max=self.backoff_seconds * 20)
                + wait_random(0, self.backoff_seconds),
                retry=retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    response = await self.http.request(
                        method, path, json=json, params=params, headers=headers
                    )
                    if response.status_code in RETRYABLE_STATUSES:
                        raise _RetryableStatusError(response)
        except _RetryableStatusError as exc:
            response = exc.response
        except httpx.TransportError as exc:
            raise PeerUnavailableError(
                f"{self.peer} is unreachable ({type(exc).__name__}).", extra={"peer": self.peer}
            ) from exc
        if response is None:  # pragma: no cover - tenacity either returns a response or raises
            raise PeerUnavailableError(f"{self.peer} gave no response.", extra={"peer": self.peer})
        if response.is_success:
            return response
        raise self._error_from(response)

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
