"""Errors of the webhook endpoint routes."""

from __future__ import annotations

from desk_contracts.errors import ErrorCode
from servicekit.errors import ConflictError, NotFoundError, ValidationFailedError


class WebhookEndpointNotFoundError(NotFoundError):
    code = ErrorCode.WEBHOOK_ENDPOINT_NOT_FOUND
    title = "No webhook endpoint has that id"


class WebhookUrlRefusedError(ValidationFailedError):
    """The URL's form, or an address its host resolves to, may not receive webhooks (``errors[].field`` is
    ``url``)."""

    code = ErrorCode.WEBHOOK_URL_REFUSED
    title = "The webhook URL is refused"


class WebhookDeliveryNotFoundError(NotFoundError):
    code = ErrorCode.WEBHOOK_DELIVERY_NOT_FOUND
    title = "The endpoint has no delivery with that id"


class WebhookDeliveryPendingError(ConflictError):
    code = ErrorCode.WEBHOOK_DELIVERY_PENDING
    title = "The delivery is still pending; it is tried again on its own"
