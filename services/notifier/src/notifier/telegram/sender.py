"""The Telegram channel of the delivery worker: one ``POST /v1/messages`` to telegram-gateway per attempt.

The request is the notification's stored ``variables`` (built by ``notifier.rules``) with the notification
id as ``message_id``, the gateway's idempotency key: a retry after a lost answer posts nothing twice.
Connection errors, timeouts, 5xx (``telegram_unavailable``), 408 and 429 are transient; any other 4xx
(``telegram_disabled``, a refused key, a request the gateway cannot read) is permanent and never retried.
The call runs inside the attempt's span, so it carries the ``traceparent`` of the request that queued it.
"""

from __future__ import annotations

import logging

import httpx

from notifier.notifications.models import Channel
from notifier.notifications.outcomes import Claimed, Delivered, PermanentDeliveryError, TransientDeliveryError
from servicekit.client import ServiceClient
from servicekit.errors import DomainError, PeerUnavailableError

log = logging.getLogger("notifier.delivery")

MESSAGES_PATH = "/v1/messages"
TRANSIENT_STATUSES = frozenset({408, 429})


class TelegramSender:
    channel = Channel.telegram
    name = "telegram-gateway"

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def send(self, item: Claimed) -> Delivered:
        body = {**item.variables, "message_id": item.id}
        try:
            # One try per attempt (idempotent=False): the queue retries, and records every attempt.
            response = await self.client.request("POST", MESSAGES_PATH, json=body, idempotent=False)
        except PeerUnavailableError as exc:
            raise TransientDeliveryError(str(exc)) from exc
        except DomainError as exc:
            status = int(exc.extra.get("peer_status") or exc.status)
            code = exc.extra.get("peer_code") or exc.code
            detail = f"telegram-gateway answered {status} {code}: {exc.detail}"
            if status >= 500 or status in TRANSIENT_STATUSES:
                raise TransientDeliveryError(detail) from exc
            raise PermanentDeliveryError(detail) from exc
        outcome = _outcome(response)
        log.info("telegram-gateway accepted", extra={"notification_id": item.id, "gateway_outcome": outcome})
        return Delivered(provider=self.name)


def _outcome(response: httpx.Response) -> str | None:
    """The gateway's ``outcome`` (posted, edited, no_card, duplicate), for the log."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        value = body.get("outcome")
        return str(value) if value is not None else None
    return None
