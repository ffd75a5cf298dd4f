"""The ``webhook`` channel of the delivery worker: one signed ``POST`` to the endpoint per attempt.

The endpoint is read at each attempt (its URL, whether it is enabled, its secrets: a rotation applies at
once). Its URL is checked again (``notifier.webhooks.targets``) and the request goes to the address that was
checked, with the host name in ``Host`` and in TLS; redirects are never followed. The body is the queued
event, the same on every attempt, and ``webhook-id`` is the delivery's id, so a receiver can drop a repeat;
``webhook-timestamp`` is the attempt's time. A 2xx answer delivers it; any other answer, a timeout or a
connection error is retried with backoff and jitter until the attempts run out (dead); a refused target, a
deleted or disabled endpoint fail it at once.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import httpx

from notifier.notifications.models import Channel
from notifier.notifications.outcomes import (
    Claimed,
    Delivered,
    PermanentDeliveryError,
    SendFailed,
    TransientDeliveryError,
)
from notifier.protection import DataProtection
from notifier.settings import Settings
from notifier.webhooks.events import WebhookEventType
from notifier.webhooks.models import WebhookEndpoint
from notifier.webhooks.service import signing_secrets
from notifier.webhooks.signing import signed_headers
from notifier.webhooks.targets import TargetRefused, checked_target
from servicekit.db import Database, utcnow

PROVIDER = "webhook"


def body_of(item: Claimed) -> bytes:
    """The delivery's body: the queued event as compact JSON (the same bytes on every attempt)."""
    return json.dumps(item.variables, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookSender:
    channel = Channel.webhook
    name = PROVIDER

    def __init__(
        self,
        *,
        database: Database,
        protection: DataProtection,
        settings: Settings,
        trust: ssl.SSLContext | None = None,
    ) -> None:
        """``trust``: what endpoints' certificates are checked against (the system's CAs by default)."""
        self.database = database
        self.trust: ssl.SSLContext | bool = trust if trust is not None else True
        self.protection = protection
        self.allow_http = settings.webhook_allow_http
        self.allow_private = settings.webhook_allow_private_targets
        self.timeout_seconds = settings.webhook_timeout_seconds

    async def _endpoint(self, item: Claimed) -> tuple[str, list[str]]:
        """The endpoint's URL and the secrets to sign with now."""
        async with self.database.sessionmaker() as session:
            endpoint = await session.get(WebhookEndpoint, item.recipient)
            if endpoint is None:
                raise PermanentDeliveryError("the endpoint was deleted")
            if not endpoint.enabled and item.template != WebhookEventType.test:
                raise PermanentDeliveryError("the endpoint is disabled")
            return endpoint.url, signing_secrets(endpoint, protection=self.protection, now=utcnow())

    async def send(self, item: Claimed) -> Delivered:
        url, secrets = await self._endpoint(item)
        try:
            target = await checked_target(url, allow_http=self.allow_http, allow_private=self.allow_private)
        except TargetRefused as exc:
            raise PermanentDeliveryError(f"{url} {exc}") from exc
        body = body_of(item)
        headers = {
            **signed_headers(secrets, webhook_id=item.id, timestamp=int(time.time()), body=body),
            "content-type": "application/json",
            "user-agent": "ExchangeDesk-Webhooks/1",
            "host": target.host_header,
        }
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        try:
            # A client per attempt: it connects to the address just checked, never to a pooled one. The
            # timeout bounds the whole attempt (httpx's bounds each step: a trickling answer never ends).
            async with (
                asyncio.timeout(self.timeout_seconds),
                httpx.AsyncClient(
                    timeout=self.timeout_seconds, follow_redirects=False, trust_env=False, verify=self.trust
                ) as client,
            ):
                # Only the status counts: the answer's body is never read (it may be of any size).
                request = client.build_request(
                    "POST", target.connect_url, content=body, headers=headers, extensions=extensions
                )
                response = await client.send(request, stream=True)
                await response.aclose()
        except httpx.HTTPError as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise TransientDeliveryError(f"no answer within {self.timeout_seconds} s") from exc
        if response.is_success:
            return Delivered(provider=PROVIDER, response_status=response.status_code)
        error = TransientDeliveryError(f"the endpoint answered {response.status_code}")
        raise SendFailed(error, provider=PROVIDER, subject=None, response_status=response.status_code)
