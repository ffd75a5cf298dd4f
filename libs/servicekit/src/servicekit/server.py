"""The HTTP protocol the services' uvicorn runs (``--http servicekit.server:HttpProtocol``).

uvicorn's httptools protocol writes a response's head and its body as two writes, and uvloop sends each at
once: two system calls, two TCP segments, and two wake-ups of the peer's event loop per response. On loopback
between processes that share two cores, those sends are a large part of a request's cost (measured in
``make bench``), so this protocol gathers what one event-loop step writes and sends it in one piece at the end
of the step. It also tells the app when the server begins a graceful shutdown (:func:`draining`), so that
responses that would otherwise never end (an order's event stream) end at once and their clients reconnect to
another replica. Everything else is uvicorn's.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

UVICORN_OPTIONS = ("--http", "servicekit.server:HttpProtocol", "--no-proxy-headers", "--no-server-header")
"""How every launch of a service runs uvicorn (Dockerfiles, ``make run``, test and benchmark processes):

- this module's protocol (a response in one write);
- no proxy headers: uvicorn would otherwise take the client address from ``X-Forwarded-For`` sent from
  127.0.0.1 whatever the service's ``TRUSTED_PROXIES`` say; the service reads the header itself, from the
  proxies it trusts (``servicekit.ratelimit.client_ip``);
- no ``Server`` banner.
"""


def uvicorn_argv(package: str, *, host: str, port: int) -> list[str]:
    """The command that runs ``package``'s service (``<package>.main:create_app``) as its image does, on this
    interpreter, listening on ``host``:``port``."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{package}.main:create_app",
        "--factory",
        *UVICORN_OPTIONS,
        "--host",
        host,
        "--port",
        str(port),
    ]


class CoalescedWrites:
    """A transport that sends what is written to it during one event-loop step as one write."""

    def __init__(self, transport: asyncio.BaseTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        if not self._transport.is_closing():
            self._transport.write(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_DRAINING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Event] = weakref.WeakKeyDictionary()


def draining() -> asyncio.Event:
    """Set once the server running on this event loop begins a graceful shutdown (SIGTERM: a rollout or a
    scale-down). uvicorn then waits for every open response to end, and a stream that waits for news would
    hold the pod until it is killed: long-lived responses end when this is set."""
    loop = asyncio.get_running_loop()
    event = _DRAINING.get(loop)
    if event is None:
        event = _DRAINING[loop] = asyncio.Event()
    return event


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over :class:`CoalescedWrites`, which says when the server drains."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]

    def shutdown(self) -> None:
        """The server's graceful shutdown reaches this connection: long-lived responses end (:func:`draining`)."""
        event = _DRAINING.get(self.loop)
        if event is None:
            event = _DRAINING[self.loop] = asyncio.Event()
        event.set()
        super().shutdown()
