"""Email providers. ``send`` returns when the provider accepted the message and raises
:class:`TransientDeliveryError` (worth retrying) or :class:`PermanentDeliveryError` (never retried), the
outcomes every channel shares (``notifier.notifications.outcomes``)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Protocol

import aiosmtplib
import httpx
from pydantic import SecretStr

from notifier.notifications.outcomes import PermanentDeliveryError, TransientDeliveryError
from notifier.settings import Settings
from servicekit.private_files import private_directory, write_private_file

DEFAULT_MESSAGE_ID_DOMAIN = "exchange-desk.local"


def message_id_domain(sender: str) -> str:
    """The domain of the From address (``Exchange Desk <no-reply@desk.example>`` → ``desk.example``), the
    right-hand side of the desk's ``Message-ID``s."""
    _name, address = parseaddr(sender)
    _local, at, domain = address.rpartition("@")
    domain = domain.strip().lower()
    return domain if at and re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", domain) else DEFAULT_MESSAGE_ID_DOMAIN


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One email. A notification's email carries ``message_id`` and ``idempotency_key`` derived from the
    notification's id, so every retry of it is the same message (``Message-ID`` for mail clients and
    servers, the idempotency key for HTTP providers that deduplicate on it)."""

    sender: str
    recipient: str
    subject: str
    text: str
    html: str
    message_id: str | None = None
    idempotency_key: str | None = None

    @classmethod
    def for_notification(
        cls, notification_id: str, *, sender: str, recipient: str, subject: str, text: str, html: str
    ) -> OutgoingEmail:
        return cls(
            sender=sender,
            recipient=recipient,
            subject=subject,
            text=text,
            html=html,
            message_id=f"<{notification_id}@{message_id_domain(sender)}>",
            idempotency_key=f"notification-{notification_id}",
        )

    def to_message(self) -> EmailMessage:
        """The RFC 5322 message: a multipart/alternative with the plain text first, the HTML preferred."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.recipient
        message["Subject"] = self.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = self.message_id or make_msgid(domain=message_id_domain(self.sender))
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        return message


class EmailProvider(Protocol):
    name: str

    async def send(self, message: OutgoingEmail) -> None: ...


class SmtpProvider:
    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None = None,
        password: SecretStr | None = None,
        starttls: bool = False,
        use_tls: bool = False,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.starttls = starttls
        self.use_tls = use_tls
        self.timeout_seconds = timeout_seconds

    async def send(self, message: OutgoingEmail) -> None:
        try:
            await aiosmtplib.send(
                message.to_message(),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password.get_secret_value() if self.password else None,
                start_tls=self.starttls,
                use_tls=self.use_tls,
                timeout=self.timeout_seconds,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
            if codes and all(code >= 500 for code in codes):
                raise PermanentDeliveryError(f"recipient refused: {detail}") from exc
            raise TransientDeliveryError(f"recipient deferred: {detail}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = PermanentDeliveryError if exc.code >= 500 else TransientDeliveryError
            raise error(f"SMTP {exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"SMTP unavailable: {type(exc).__name__}: {exc}") from exc


class HttpApiProvider:
    """A Resend-compatible API: ``POST {url}`` with ``{from, to, subject, html, text, headers}`` and a
    Bearer key. The email's idempotency key goes in the ``Idempotency-Key`` header (the API accepts a retry
    of the same key once and sends nothing again) and its ``Message-ID`` in the message's headers."""

    name = "http_api"

    def __init__(
        self,
        *,
        url: str,
        api_key: SecretStr | None,
        timeout_seconds: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.timeout_seconds = timeout_seconds
        self.transport = transport

    async def send(self, message: OutgoingEmail) -> None:
        headers = {"Authorization": f"Bearer {self.api_key.get_secret_value()}"} if self.api_key else {}
        if message.idempotency_key:
            headers["Idempotency-Key"] = message.idempotency_key
        body: dict[str, object] = {
            "from": message.sender,
            "to": [message.recipient],
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
        }
        if message.message_id:
            body["headers"] = {"Message-ID": message.message_id}
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds, transport=self.transport) as client:
                response = await client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"email API unavailable: {type(exc).__name__}: {exc}") from exc
        if response.status_code < 300:
            return
        detail = f"email API answered {response.status_code}: {response.text[:300]}"
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientDeliveryError(detail)
        raise PermanentDeliveryError(detail)


class MailDropProvider:
    """The embedded default: every message becomes an ``.eml`` file in ``directory``; a message sent again
    (the same idempotency key) replaces its own file."""

    name = "maildrop"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: OutgoingEmail) -> None:
        data = message.to_message().as_bytes()
        name = re.sub(r"[^A-Za-z0-9_-]", "_", message.idempotency_key or uuid.uuid4().hex)
        path = self.directory / f"{name}.eml"
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as exc:
            raise TransientDeliveryError(f"mail drop not writable: {exc}") from exc

    def _write(self, path: Path, data: bytes) -> None:
        private_directory(self.directory)
        write_private_file(path, data)


class FallbackChain:
    """Tries each provider in turn; the next one only after a TRANSIENT failure of the previous."""

    def __init__(self, providers: Sequence[EmailProvider]) -> None:
        if not providers:
            raise ValueError("at least one email provider is needed")
        self.providers = list(providers)
        self.name = ">".join(p.name for p in self.providers)

    async def send(self, message: OutgoingEmail) -> None:
        await self.send_via(message)

    async def send_via(self, message: OutgoingEmail) -> str:
        """Send and return the name of the provider that accepted the message."""
        errors: list[str] = []
        for provider in self.providers:
            try:
                await provider.send(message)
            except TransientDeliveryError as exc:
                errors.append(f"{provider.name}: {exc}")
                continue
            except PermanentDeliveryError as exc:
                raise PermanentDeliveryError(f"{provider.name}: {exc}") from exc
            return provider.name
        raise TransientDeliveryError("; ".join(errors))


def mail_drop_directory(settings: Settings) -> Path:
    """Where the mail drop writes: ``mail/`` under the service's ``VAR_DIR``."""
    return settings.var_dir / "mail"


def build_provider(name: str, settings: Settings) -> EmailProvider:
    if name == "smtp":
        return SmtpProvider(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            timeout_seconds=settings.smtp_timeout_seconds,
        )
    if name == "http_api":
        if not settings.email_api_url:
            raise ValueError("email provider http_api needs NOTIFIER_EMAIL_API_URL")
        return HttpApiProvider(
            url=settings.email_api_url,
            api_key=settings.email_api_key,
            timeout_seconds=settings.email_api_timeout_seconds,
        )
    if name == "maildrop":
        return MailDropProvider(mail_drop_directory(settings))
    raise ValueError(f"unknown email provider {name!r} (smtp, http_api or maildrop)")


def build_chain(settings: Settings) -> FallbackChain:
    """The providers named by ``settings.email_providers``, in that order."""
    return FallbackChain([build_provider(name, settings) for name in settings.email_providers])
