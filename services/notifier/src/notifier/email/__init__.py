"""Email providers behind one interface, chained by settings: SMTP, an HTTP email API, the .eml mail drop."""

from notifier.email.providers import (
    EmailProvider,
    FallbackChain,
    HttpApiProvider,
    MailDropProvider,
    OutgoingEmail,
    PermanentDeliveryError,
    SmtpProvider,
    TransientDeliveryError,
    build_chain,
)

__all__ = [
    "EmailProvider",
    "FallbackChain",
    "HttpApiProvider",
    "MailDropProvider",
    "OutgoingEmail",
    "PermanentDeliveryError",
    "SmtpProvider",
    "TransientDeliveryError",
    "build_chain",
]
