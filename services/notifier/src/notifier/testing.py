"""Test helpers for notifier and the suites that exercise it (like ``servicekit.testing``): a real SMTP server
that records what it accepts, a stand-in telegram-gateway (``POST /v1/messages`` as contract B answers it),
fast delivery workers, settings and API keys for in-process apps, a website's webhook receiver (HTTP or HTTPS).

``aiosmtpd`` (a development dependency) is imported only when a server starts."""

from __future__ import annotations

import base64
import email
import email.policy
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from notifier.alerts.conditions import AlertPolicy
from notifier.alerts.service import Alerting
from notifier.email import EmailSender, FallbackChain, SmtpProvider
from notifier.metrics import AlertMetrics
from notifier.notifications.models import DeliveryAttempt, Notification
from notifier.protection import DataProtection
from notifier.settings import Settings
from notifier.telegram.sender import TelegramSender
from notifier.workers.delivery import DeliveryWorker
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.client import ServiceClient
from servicekit.db import Database, utcnow
from servicekit.settings import PeerSettings
from servicekit.testing import (
    TEST_EVENT_KEY_ID,
    TEST_EVENT_KEYRING,
    TEST_EVENT_KEYS,
    eventually,
    fixed_key,
    free_port,
    in_process_settings,
    serve_stand_in,
)

SENDER = "Exchange Desk <no-reply@desk.test>"

TEST_DATA_KEY_ID = "notifier-test1"
TEST_DATA_KEYS = {TEST_DATA_KEY_ID: fixed_key("notifier data key 1")}
TEST_BLIND_INDEX_KEY = fixed_key("notifier blind index")
TEST_PROTECTION = DataProtection(
    keys={key_id: base64.b64decode(key) for key_id, key in TEST_DATA_KEYS.items()},
    current_key_id=TEST_DATA_KEY_ID,
    blind_index_key=base64.b64decode(TEST_BLIND_INDEX_KEY),
    events=TEST_EVENT_KEYRING,
)
"""The keys of test apps (:func:`make_settings`): what a test queues directly opens in the app, and back."""


def order_payload(**changes: Any) -> dict[str, Any]:
    """An order event's payload as order-api writes it (``order_payload``), without the customer's address."""
    return {
        "order_id": "ord-1",
        "customer_id": "cus-1",
        "status": "awaiting_deposit",
        "from_currency": "BTC",
        "from_network": "bitcoin",
        "to_currency": "USDT",
        "to_network": "tron",
        "amount": "0.015",
        "priority": "normal",
        "deposit_address": "bc1qaddress",
        "queue_position": None,
        "expires_at": "2026-11-21T15:30:00+00:00",
        "operator_id": None,
        "locale": "en",
        "version": 1,
        **changes,
    }


def event_envelope(event_type: str, aggregate_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An event as a peer posts it to ``POST /v1/events``, with a fresh id."""
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": "order-api",
        "occurred_at": utcnow().isoformat(),
        "aggregate_id": aggregate_id,
        "payload": payload,
    }


@dataclass
class WebhookReceiver:
    """A website's webhook endpoint on loopback: records each request (headers, body exactly as received) and
    answers ``answers`` first, one status per request, then 200."""

    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    redirected: int = 0
    """Requests that followed a redirect (a 3xx answer points to ``/hooks/elsewhere``)."""
    url: str = ""

    async def _receive(self, request: web.Request) -> web.Response:
        self.received.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        status = self.answers.pop(0) if self.answers else 200
        location = {"Location": "/hooks/elsewhere"} if 300 <= status < 400 else None
        return web.Response(status=status, headers=location)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.redirected += 1
        return web.Response(status=200)

    @asynccontextmanager
    async def serving(self, *, tls: ssl.SSLContext | None = None) -> AsyncIterator[WebhookReceiver]:
        """Serve on loopback: plain HTTP, or HTTPS with ``tls`` (``https://localhost:…``, see
        :func:`localhost_tls`)."""
        app = web.Application()
        app.router.add_post("/hooks/desk", self._receive)
        app.router.add_route("*", "/hooks/elsewhere", self._elsewhere)
        if tls is None:
            async with serve_stand_in(app) as base:
                self.url = f"{base}/hooks/desk"
                yield self
            return
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        self.url = f"https://localhost:{runner.addresses[0][1]}/hooks/desk"
        try:
            yield self
        finally:
            await runner.cleanup()


def localhost_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A fresh self-signed certificate for ``localhost``: the server's TLS context and a client's trusting it
    (``cryptography``, a dependency of order-api's, is imported only here)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert_file.write_bytes(pem)
        key_file.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=pem.decode())
    return server, client


def alerting_of(policy: AlertPolicy) -> Alerting:
    """The alert lifecycle of a test: ``policy``, the test keys and metrics of its own."""
    return Alerting(policy=policy, protection=TEST_PROTECTION, metrics=AlertMetrics())


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.server.refused:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.server.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    """A real SMTP server on loopback; ``messages`` are the accepted ones, parsed."""

    port: int = field(default_factory=free_port)
    refused: set[str] = field(default_factory=set)
    messages: list[EmailMessage] = field(default_factory=list)
    _controller: Any = None

    def start(self) -> None:
        if self._controller is None:
            from aiosmtpd.controller import Controller

            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def provider(self, *, timeout_seconds: float = 5.0) -> SmtpProvider:
        return SmtpProvider(host="127.0.0.1", port=self.port, timeout_seconds=timeout_seconds)

    def recipients(self) -> list[str]:
        return [str(m["To"]) for m in self.messages]


FAST_WORKER: dict[str, Any] = {
    "max_attempts": 8,
    "backoff_base_seconds": 0.05,
    "backoff_max_seconds": 0.2,
    "poll_seconds": 0.05,
    "batch_size": 10,
}


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    """An :class:`SmtpServer`, started, until the block ends (whatever the block raises)."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def text_of(message: EmailMessage) -> str:
    """The plain-text part of an email."""
    body = message.get_body(preferencelist=("plain",))
    if body is None:
        raise AssertionError(f"no plain-text part in {message['Subject']!r}")
    return str(body.get_content())


async def mail_to(smtp: SmtpServer, recipient: str, count: int) -> list[EmailMessage]:
    """The emails to ``recipient`` once ``smtp`` has received ``count`` of them (15 s at most)."""

    async def received() -> list[EmailMessage]:
        return [m for m in smtp.messages if str(m["To"]) == recipient]

    return await eventually(
        received,
        until=lambda found: len(found) >= count,
        within=15.0,
        message=f"{count} email(s) to {recipient}",
    )


def make_worker(database: Database, smtp: SmtpServer, **overrides: Any) -> DeliveryWorker:
    """A fast email worker: tiny backoff and poll interval, sending through ``smtp``."""
    sender = EmailSender(chain=FallbackChain([smtp.provider(timeout_seconds=2.0)]), sender=SENDER)
    return DeliveryWorker(
        database=database, protection=TEST_PROTECTION, sender=sender, **{**FAST_WORKER, **overrides}
    )


def make_telegram_worker(database: Database, client: ServiceClient, **overrides: Any) -> DeliveryWorker:
    """A fast Telegram worker posting to telegram-gateway through ``client``."""
    return DeliveryWorker(
        database=database,
        protection=TEST_PROTECTION,
        sender=TelegramSender(client),
        **{**FAST_WORKER, **overrides},
    )


GATEWAY_KEY = mint_key("nt")


@dataclass
class StandInGateway:
    """telegram-gateway's ``POST /v1/messages`` as contract B answers it, recording each request.

    ``answers`` are statuses served first, one per request (``503`` telegram_unavailable, ``409``
    telegram_disabled, ...); then every request is ``200`` (``duplicate`` for a ``message_id`` seen before).
    Requests without :data:`GATEWAY_KEY` are ``401``.
    """

    answers: list[int] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    @property
    def posted(self) -> list[dict[str, Any]]:
        """The bodies answered 200 that were not duplicates."""
        seen: set[str] = set()
        first: list[dict[str, Any]] = []
        for body in self.requests:
            if body.get("_status") == 200 and body["message_id"] not in seen:
                seen.add(body["message_id"])
                first.append({k: v for k, v in body.items() if k != "_status"})
        return first

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        return app

    async def _messages(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {GATEWAY_KEY}":
            return _problem(401, "api_key_invalid", "API key not accepted")
        body: dict[str, Any] = await request.json()
        status = self.answers.pop(0) if self.answers else 200
        duplicate = any(r["message_id"] == body["message_id"] and r["_status"] == 200 for r in self.requests)
        self.requests.append({**body, "_status": status})
        self.headers.append(dict(request.headers))
        if status == 503:
            return _problem(503, "telegram_unavailable", "Telegram is unreachable", {"Retry-After": "1"})
        if status == 409:
            return _problem(409, "telegram_disabled", "No bot token or chat configured")
        if status != 200:
            return _problem(status, "stand_in_error", "The stand-in was told to fail")
        outcome = "duplicate" if duplicate else "posted"
        return web.json_response(
            {
                "message_id": body["message_id"],
                "outcome": outcome,
                "telegram_message_ids": [len(self.requests)],
            }
        )

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[StandInGateway]:
        async with serve_stand_in(self.app()) as url:
            self.url = url
            yield self

    def client(self) -> ServiceClient:
        return ServiceClient(
            peer="telegram-gateway", base_url=self.url, api_key=GATEWAY_KEY, timeout_seconds=5
        )


def _problem(status: int, code: str, title: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {
        "type": f"urn:exchange-desk:problem:{code}",
        "title": title,
        "status": status,
        "detail": title,
        "code": code,
    }
    return web.json_response(body, status=status, content_type="application/problem+json", headers=headers)


@dataclass(frozen=True)
class Keys:
    reader: str = field(default_factory=lambda: mint_key("tk"))
    admin: str = field(default_factory=lambda: mint_key("tk"))
    other: str = field(default_factory=lambda: mint_key("tk"))
    publisher: str = field(default_factory=lambda: mint_key("tk"))
    on_call: str = field(default_factory=lambda: mint_key("tk"))

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="reader", hash=hash_key(self.reader), scopes=["notifications:read"]),
            ApiKeyEntry(
                name="admin",
                hash=hash_key(self.admin),
                scopes=["notifications:read", "notifications:write", "webhooks:admin"],
            ),
            ApiKeyEntry(name="other", hash=hash_key(self.other), scopes=["events:write"]),
            ApiKeyEntry(name="order-api", hash=hash_key(self.publisher), scopes=["events:publish"]),
            ApiKeyEntry(
                name="on-call", hash=hash_key(self.on_call), scopes=["notifications:read", "alerts:write"]
            ),
        ]


KEYS = Keys()


def make_settings(database_url: str | None, var_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app: fast workers; Telegram off unless ``gateway_url`` (a
    :class:`StandInGateway`'s) is given."""
    gateway_url = overrides.pop("gateway_url", None)
    if gateway_url is not None:
        overrides.setdefault(
            "telegram_gateway", PeerSettings(url=gateway_url, api_key=SecretStr(GATEWAY_KEY))
        )
    values: dict[str, Any] = {
        **in_process_settings(database_url=database_url, var_dir=var_dir, api_keys=KEYS.entries()),
        "email_from": SENDER,
        "delivery_poll_seconds": 0.05,
        "delivery_backoff_base_seconds": 0.05,
        "delivery_backoff_max_seconds": 0.2,
        "telegram_enabled": gateway_url is not None,
        "alert_check_seconds": 0.1,
        "data_keys": {key_id: SecretStr(key) for key_id, key in TEST_DATA_KEYS.items()},
        "data_key_current": TEST_DATA_KEY_ID,
        "blind_index_key": SecretStr(TEST_BLIND_INDEX_KEY),
        "event_keys": {key_id: SecretStr(key) for key_id, key in TEST_EVENT_KEYS.items()},
        "event_key_current": TEST_EVENT_KEY_ID,
        **overrides,
    }
    return Settings(**values)


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


async def stored_notification(database: Database, notification_id: str) -> Notification:
    """The notification as the delivery queue holds it now."""
    async with database.sessionmaker() as session:
        notification = await session.get(Notification, notification_id)
        if notification is None:
            raise LookupError(f"no notification {notification_id}")
        return notification


async def delivery_attempts(database: Database, notification_id: str) -> list[DeliveryAttempt]:
    """Every attempt to deliver the notification, first first."""
    async with database.sessionmaker() as session:
        rows = await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.notification_id == notification_id)
            .order_by(DeliveryAttempt.attempt)
        )
        return list(rows.all())


@asynccontextmanager
async def running_workers(*workers: DeliveryWorker) -> AsyncIterator[None]:
    """The delivery ``workers`` started for the block, stopped after it."""
    for worker in workers:
        worker.start()
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()
