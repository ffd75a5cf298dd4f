"""How a channel reports a failed send: :class:`TransientDeliveryError` (worth retrying later) or
:class:`PermanentDeliveryError` (no retry can fix it). Every channel (email providers, telegram-gateway)
raises these; the delivery worker turns them into attempt outcomes."""

from __future__ import annotations


class DeliveryError(Exception):
    """A channel did not accept the message."""


class TransientDeliveryError(DeliveryError):
    """Worth retrying later (server down, timeout, SMTP 4xx, an API's 5xx or 429)."""


class PermanentDeliveryError(DeliveryError):
    """No retry can fix it (invalid recipient, SMTP 5xx, an API's other 4xx)."""
