"""The services' HTTP protocol (``servicekit.server``): each response leaves in one write, and uvicorn's
behaviour (keep-alive, streaming, closing) is unchanged."""

from __future__ import annotations

import asyncio
import inspect
import re
from importlib import metadata
from typing import Any

from packaging.requirements import Requirement
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from servicekit.server import UVICORN_OPTIONS, CoalescedWrites, HttpProtocol
from servicekit.testing import eventually


class RecordingTransport(asyncio.Transport):
    """What the socket would have been asked to send, one entry per write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await asyncio.sleep(0)  # the next part in a later step of the loop
        await send({"type": "http.response.body", "body": b"two"})
        return
    body = b'{"ok":true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def connect() -> tuple[HttpProtocol, RecordingTransport]:
    config = Config(app=app, http=HttpProtocol, lifespan="off", log_level="warning", access_log=False)
    protocol = HttpProtocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


CHECK = (
    "servicekit.server.HttpProtocol subclasses uvicorn's private httptools protocol: check that its "
    "CoalescedWrites still sees every write (and the close) uvicorn makes, rerun this file, then widen the "
    "uvicorn bound in libs/servicekit/pyproject.toml. "
)

TRANSPORT_CALLS_KNOWN = {"write", "close", "is_closing", "set_protocol", "get_extra_info"}
"""What uvicorn's httptools protocol calls on its transport: ``write`` and ``close`` go through the pending
writes; the rest only read state or hand the socket on (an upgrade), and pass straight through."""


def test_the_uvicorn_internals_the_protocol_relies_on_are_unchanged() -> None:
    """Fails, saying what to check, when a uvicorn release moves what the subclass overrides or calls."""
    installed = metadata.version("uvicorn")
    (bound,) = [
        Requirement(spec) for spec in metadata.requires("servicekit") or [] if spec.startswith("uvicorn")
    ]
    assert bound.specifier.contains(installed), f"{CHECK}uvicorn {installed} is outside {bound.specifier}."

    overridden = inspect.signature(httptools_impl.HttpToolsProtocol.connection_made)
    assert list(overridden.parameters) == ["self", "transport"], f"{CHECK}connection_made is {overridden}."
    created = inspect.signature(httptools_impl.HttpToolsProtocol.__init__)
    assert {"config", "server_state", "app_state"} <= set(created.parameters), (
        f"{CHECK}__init__ is {created}."
    )

    called = set(re.findall(r"\btransport\.(\w+)\(", inspect.getsource(httptools_impl)))
    unknown = called - TRANSPORT_CALLS_KNOWN
    assert not unknown, (
        f"{CHECK}uvicorn now calls transport.{sorted(unknown)}, which would bypass the writes held."
    )
    assert {"write", "close"} <= called, f"{CHECK}uvicorn no longer writes or closes through self.transport."

    protocol, _ = connect()  # the loop it schedules the flush on, and the transport it writes to
    assert isinstance(protocol.loop, asyncio.AbstractEventLoop), f"{CHECK}HttpToolsProtocol.loop is gone."
    assert isinstance(protocol.transport, CoalescedWrites), f"{CHECK}connection_made no longer keeps it."

    config = Config(app=app, http=UVICORN_OPTIONS[1], lifespan="off")
    config.load()
    assert config.http_protocol_class is HttpProtocol, f"{CHECK}--http no longer loads the class named."


async def test_a_response_head_and_body_leave_in_one_write_and_keep_alive_still_works() -> None:
    protocol, transport = connect()

    async def writes() -> list[bytes]:
        return transport.writes

    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: desk\r\n\r\n")
    await eventually(writes, until=lambda sent: len(sent) == 1)
    (response,) = transport.writes
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b'\r\n\r\n{"ok":true}')

    protocol.data_received(b"GET /b HTTP/1.1\r\nHost: desk\r\n\r\n")  # the same connection, kept alive
    await eventually(writes, until=lambda sent: len(sent) == 2)
    assert transport.writes[1].endswith(b'{"ok":true}')
    assert not transport.closed


async def test_a_streamed_response_arrives_whole_and_a_closing_connection_sends_before_it_closes() -> None:
    protocol, transport = connect()

    async def closed() -> bool:
        return transport.closed

    protocol.data_received(b"GET /stream HTTP/1.1\r\nHost: desk\r\nConnection: close\r\n\r\n")
    await eventually(closed)
    sent = b"".join(transport.writes)
    assert sent.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in sent
    assert sent.endswith(b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n")
    assert len(transport.writes) == 2  # head with the first part, then the rest
