"""The email channel of the delivery worker: render the notification's template, send it through the
provider chain. A template that cannot render (a value it needs is missing) fails the notification at once,
the reason in its ``last_error``; every retry of a notification is the same message (its ``Message-ID`` and
idempotency key come from the notification's id)."""

from __future__ import annotations

from jinja2 import TemplateError

from notifier.email.providers import FallbackChain, OutgoingEmail
from notifier.messages import TemplateValueMissingError, UnknownTemplateError, render_email
from notifier.notifications.models import Channel
from notifier.notifications.outcomes import (
    Claimed,
    Delivered,
    DeliveryError,
    PermanentDeliveryError,
    SendFailed,
)


class EmailSender:
    channel = Channel.email

    def __init__(self, *, chain: FallbackChain, sender: str) -> None:
        self.chain = chain
        self.sender = sender
        self.name = chain.name

    async def send(self, item: Claimed) -> Delivered:
        try:
            rendered = render_email(item.template, item.locale, item.variables)
        except (UnknownTemplateError, TemplateValueMissingError, TemplateError) as exc:
            error = PermanentDeliveryError(f"{type(exc).__name__}: {exc}")
            raise SendFailed(error, provider=self.name, subject=None) from exc
        message = OutgoingEmail.for_notification(
            item.id,
            sender=self.sender,
            recipient=item.recipient,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
        )
        try:
            provider = await self.chain.send_via(message)
        except DeliveryError as exc:
            raise SendFailed(exc, provider=self.name, subject=rendered.subject) from exc
        return Delivered(provider=provider, subject=rendered.subject)
