"""The services' HTTP protocol (``servicekit.server``): each response leaves in one write, and uvicorn's
behaviour (keep-alive, streaming, closing) is unchanged."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from servicekit.server import HttpProtocol
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
