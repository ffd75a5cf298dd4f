"""Email providers against real servers: SMTP (aiosmtpd), an HTTP API stand-in, the .eml mail drop."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from notifier.email import (
    FallbackChain,
    HttpApiProvider,
    MailDropProvider,
    OutgoingEmail,
    PermanentDeliveryError,
    SmtpProvider,
    TransientDeliveryError,
)
from notifier.testing import SENDER, SmtpServer
from servicekit.testing import free_port, serve_stand_in

MESSAGE = OutgoingEmail(
    sender=SENDER,
    recipient="anna@example.com",
    subject="Ваш код подтверждения",
    text="Your code: 482913",
    html="<p>Your code: <strong>482913</strong></p>",
)


async def test_smtp_delivers_both_parts(smtp_server: SmtpServer) -> None:
    await smtp_server.provider().send(MESSAGE)

    [received] = smtp_server.messages
    assert received["Subject"] == "Ваш код подтверждения"
    assert received["To"] == "anna@example.com"
    text = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert "482913" in text.get_content()
    assert "<strong>482913</strong>" in html.get_content()


async def test_smtp_refused_recipient_is_permanent(smtp_server: SmtpServer) -> None:
    smtp_server.refused.add("anna@example.com")

    with pytest.raises(PermanentDeliveryError, match="550"):
        await smtp_server.provider().send(MESSAGE)
    assert smtp_server.messages == []


async def test_smtp_server_down_is_transient() -> None:
    provider = SmtpProvider(host="127.0.0.1", port=free_port(), timeout_seconds=2.0)

    with pytest.raises(TransientDeliveryError):
        await provider.send(MESSAGE)


def _email_api(status: int, received: list[dict[str, Any]]) -> web.Application:
    async def send(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer re_test_key":
            return web.json_response({"message": "bad key"}, status=401)
        received.append(await request.json())
        return web.json_response({"id": "em_1"} if status < 300 else {"message": "no"}, status=status)

    app = web.Application()
    app.router.add_post("/emails", send)
    return app


async def test_http_api_posts_the_message_with_the_key() -> None:
    received: list[dict[str, Any]] = []
    async with serve_stand_in(_email_api(200, received)) as url:
        await HttpApiProvider(url=f"{url}/emails", api_key=SecretStr("re_test_key")).send(MESSAGE)

    assert received == [
        {
            "from": SENDER,
            "to": ["anna@example.com"],
            "subject": MESSAGE.subject,
            "html": MESSAGE.html,
            "text": MESSAGE.text,
        }
    ]


async def test_http_api_sends_the_idempotency_key_and_message_id_of_the_notification() -> None:
    seen: list[tuple[str | None, dict[str, Any]]] = []

    async def send(request: web.Request) -> web.Response:
        seen.append((request.headers.get("Idempotency-Key"), await request.json()))
        return web.json_response({"id": "em_1"})

    app = web.Application()
    app.router.add_post("/emails", send)
    message = OutgoingEmail.for_notification(
        "5f0c6a2e-8a43-4f5e-9b1d-2c3d4e5f6a7b",
        sender=SENDER,
        recipient="anna@example.com",
        subject=MESSAGE.subject,
        text=MESSAGE.text,
        html=MESSAGE.html,
    )
    async with serve_stand_in(app) as url:
        provider = HttpApiProvider(url=f"{url}/emails", api_key=None)
        await provider.send(message)
        await provider.send(message)  # a retry of the same notification

    assert [key for key, _body in seen] == ["notification-5f0c6a2e-8a43-4f5e-9b1d-2c3d4e5f6a7b"] * 2
    assert [body["headers"] for _key, body in seen] == [
        {"Message-ID": "<5f0c6a2e-8a43-4f5e-9b1d-2c3d4e5f6a7b@desk.test>"}
    ] * 2


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("Exchange Desk <no-reply@Desk.Example>", "desk.example"),
        ("no-reply@mail.desk.example", "mail.desk.example"),
        ("Exchange Desk", "exchange-desk.local"),
    ],
)
def test_message_ids_use_the_senders_domain(sender: str, domain: str) -> None:
    message = OutgoingEmail.for_notification(
        "n-1", sender=sender, recipient="a@b.c", subject="s", text="t", html="h"
    )
    assert message.message_id == f"<n-1@{domain}>"
    assert message.to_message()["Message-ID"] == f"<n-1@{domain}>"


async def test_maildrop_replaces_the_file_of_a_message_sent_again(tmp_path: Path) -> None:
    message = OutgoingEmail.for_notification(
        "n-1", sender=SENDER, recipient="anna@example.com", subject="s", text="t", html="h"
    )
    drop = MailDropProvider(tmp_path)
    await drop.send(message)
    await drop.send(message)

    [path] = _eml_files(tmp_path)
    assert (
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Message-ID"]
        == "<n-1@desk.test>"
    )


@pytest.mark.parametrize(("status", "error"), [(500, TransientDeliveryError), (422, PermanentDeliveryError)])
async def test_http_api_errors_are_classified(status: int, error: type[Exception]) -> None:
    async with serve_stand_in(_email_api(status, [])) as url:
        provider = HttpApiProvider(url=f"{url}/emails", api_key=SecretStr("re_test_key"))
        with pytest.raises(error, match=str(status)):
            await provider.send(MESSAGE)


async def test_http_api_unreachable_is_transient() -> None:
    provider = HttpApiProvider(url=f"http://127.0.0.1:{free_port()}/emails", api_key=None, timeout_seconds=2)

    with pytest.raises(TransientDeliveryError):
        await provider.send(MESSAGE)


async def test_maildrop_writes_a_parseable_eml(tmp_path: Path) -> None:
    await MailDropProvider(tmp_path / "mail").send(MESSAGE)

    [path] = (tmp_path / "mail").glob("*.eml")
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Subject"] == MESSAGE.subject
    assert parsed["To"] == "anna@example.com"
    assert parsed.is_multipart()


def _eml_files(directory: Path) -> list[Path]:
    return list(directory.glob("*.eml"))


class _Failing:
    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    async def send(self, message: OutgoingEmail) -> None:
        self.calls += 1
        raise self.error


async def test_fallback_chain_uses_the_next_provider_on_transient_failure(tmp_path: Path) -> None:
    down = _Failing("smtp", TransientDeliveryError("connection refused"))
    chain = FallbackChain([down, MailDropProvider(tmp_path)])

    assert await chain.send_via(MESSAGE) == "maildrop"
    assert down.calls == 1
    assert len(_eml_files(tmp_path)) == 1


async def test_fallback_chain_stops_at_a_permanent_failure(tmp_path: Path) -> None:
    chain = FallbackChain([_Failing("smtp", PermanentDeliveryError("550")), MailDropProvider(tmp_path)])

    with pytest.raises(PermanentDeliveryError, match="smtp: 550"):
        await chain.send(MESSAGE)
    assert _eml_files(tmp_path) == []


async def test_fallback_chain_all_transient_is_transient() -> None:
    chain = FallbackChain(
        [_Failing("a", TransientDeliveryError("x")), _Failing("b", TransientDeliveryError("y"))]
    )

    with pytest.raises(TransientDeliveryError, match="a: x; b: y"):
        await chain.send(MESSAGE)
