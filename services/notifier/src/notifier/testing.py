"""Test helpers for notifier and the suites that exercise it (like ``servicekit.testing``): a real SMTP server
that records what it accepts, a fast delivery worker, settings and API keys for in-process apps.

``aiosmtpd`` (a development dependency) is imported only when a server starts."""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from notifier.email import FallbackChain, SmtpProvider
from notifier.notifications.worker import DeliveryWorker
from notifier.settings import Settings
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.db import Database
from servicekit.testing import free_port

SENDER = "Exchange Desk <no-reply@desk.test>"


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


def make_worker(database: Database, smtp: SmtpServer, **overrides: Any) -> DeliveryWorker:
    """A fast worker: tiny backoff and poll interval, sending through ``smtp``."""
    options: dict[str, Any] = {
        "max_attempts": 8,
        "backoff_base_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "poll_seconds": 0.05,
        "batch_size": 10,
        **overrides,
    }
    return DeliveryWorker(
        database=database, chain=FallbackChain([smtp.provider(timeout_seconds=2.0)]), sender=SENDER, **options
    )


@dataclass(frozen=True)
class Keys:
    reader: str = field(default_factory=lambda: mint_key("tk"))
    admin: str = field(default_factory=lambda: mint_key("tk"))
    other: str = field(default_factory=lambda: mint_key("tk"))
    publisher: str = field(default_factory=lambda: mint_key("tk"))

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="reader", hash=hash_key(self.reader), scopes=["notifications:read"]),
            ApiKeyEntry(
                name="admin", hash=hash_key(self.admin), scopes=["notifications:read", "notifications:write"]
            ),
            ApiKeyEntry(name="other", hash=hash_key(self.other), scopes=["events:write"]),
            ApiKeyEntry(name="order-api", hash=hash_key(self.publisher), scopes=["events:publish"]),
        ]


KEYS = Keys()


def make_settings(database_url: str | None, var_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "var_dir": var_dir,
        "api_keys": KEYS.entries(),
        "log_json": False,
        "log_level": "WARNING",
        "trace_database": False,
        "email_from": SENDER,
        "delivery_poll_seconds": 0.05,
        "delivery_backoff_base_seconds": 0.05,
        "delivery_backoff_max_seconds": 0.2,
        **overrides,
    }
    return Settings(**values)


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}
