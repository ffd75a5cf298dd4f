"""What the delivery worker hands a channel (:class:`Claimed`) and what the channel answers: :class:`Delivered`,
or how a send failed: :class:`TransientDeliveryError` (worth retrying later) or
:class:`PermanentDeliveryError` (no retry can fix it). Every channel (email providers, telegram-gateway)
raises these; the delivery worker turns them into attempt outcomes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from notifier.notifications.models import Channel


class DeliveryError(Exception):
    """A channel did not accept the message."""


class TransientDeliveryError(DeliveryError):
    """Worth retrying later (server down, timeout, SMTP 4xx, an API's 5xx or 429)."""


class PermanentDeliveryError(DeliveryError):
    """No retry can fix it (invalid recipient, SMTP 5xx, an API's other 4xx)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    template: str
    locale: str
    recipient: str
    variables: dict[str, Any]
    attempts: int
    traceparent: str | None
    thread: str | None = None
    """What the message is about (an order, an alert): one thread's messages go out in the order queued."""


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a sender reports once the message was accepted."""

    provider: str
    subject: str | None = None
    response_status: int | None = None
    """What a webhook endpoint answered."""


class ChannelSender(Protocol):
    """Sends one claimed notification of ``channel``; raises :class:`TransientDeliveryError` or
    :class:`PermanentDeliveryError`, or :class:`SendFailed` wrapping one to record the provider and subject
    known when it failed."""

    channel: Channel
    name: str

    async def send(self, item: Claimed) -> Delivered: ...


class SendFailed(Exception):
    """Wraps a delivery error with the provider and subject known when it happened."""

    def __init__(
        self, error: Exception, *, provider: str, subject: str | None, response_status: int | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.provider = provider
        self.subject = subject
        self.response_status = response_status
