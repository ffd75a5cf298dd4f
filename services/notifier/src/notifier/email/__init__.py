"""Email providers behind one interface, chained by settings: SMTP, an HTTP email API, the .eml mail drop;
and the email sender of the delivery worker."""

from notifier.email.providers import (
    EmailProvider,
    FallbackChain,
    HttpApiProvider,
    MailDropProvider,
    OutgoingEmail,
    SmtpProvider,
    build_chain,
)
from notifier.email.sender import EmailSender
from notifier.notifications.outcomes import PermanentDeliveryError, TransientDeliveryError

__all__ = [
    "EmailProvider",
    "EmailSender",
    "FallbackChain",
    "HttpApiProvider",
    "MailDropProvider",
    "OutgoingEmail",
    "PermanentDeliveryError",
    "SmtpProvider",
    "TransientDeliveryError",
    "build_chain",
]
