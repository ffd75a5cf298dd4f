"""What the notifier holds about people, sealed (the mechanism is :mod:`servicekit.sealing`, shared with
order-api).

- A notification's recipient and its template variables are stored only sealed with the data keys
  (``NOTIFIER_DATA_KEYS``, ``NOTIFIER_DATA_KEY_CURRENT``); one message per event and recipient is kept by the
  recipient's blind index (``NOTIFIER_BLIND_INDEX_KEY``), never by the address.
- Personal data in order-api's events (the address to write to, a one-time code) arrives sealed with the
  event keys (``NOTIFIER_EVENT_KEYS``, the same ring as order-api's ``ORDER_API_EVENT_KEYS``) and is opened
  in memory only.
- A webhook endpoint's signing secrets are stored only sealed with the data keys.
- One-time secrets (a sign-in code) are removed from the sealed variables once the message is sent.

Outside production, when none is configured, the data keys are generated once and kept in
``var/notifier-secrets.json`` (mode 0600), the event keys in ``var/event-secrets.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from servicekit import sealing

RECIPIENT_CONTEXT = "notification.recipient"
VARIABLES_CONTEXT = "notification.variables"
WEBHOOK_SECRET_CONTEXT = "webhook.secret"  # noqa: S105 (a sealing context, not a secret)
ONE_TIME_VARIABLES: Mapping[str, tuple[str, ...]] = {"email_code": ("code",)}
"""Variables of a template that are secrets good for one use: removed once the message is sent."""


class DataProtection(sealing.DataProtection):
    """Seals and opens recipients and template variables; opens what events carry sealed."""

    dev_file = "notifier-secrets.json"

    def recipient_index(self, channel: str, recipient: str) -> str:
        """The blind index of a recipient: an email normalised, a chat name as it is, per channel."""
        value = self.normalise_email(recipient) if channel == "email" else recipient.strip()
        return self.keyed_digest(f"{channel}:{value}", purpose=RECIPIENT_CONTEXT)

    def seal_recipient(self, recipient: str) -> str:
        return self.seal(recipient, context=RECIPIENT_CONTEXT)

    def open_recipient(self, sealed: str) -> str:
        return self.open(sealed, context=RECIPIENT_CONTEXT)

    def seal_webhook_secret(self, secret: str) -> str:
        return self.seal(secret, context=WEBHOOK_SECRET_CONTEXT)

    def open_webhook_secret(self, sealed: str) -> str:
        return self.open(sealed, context=WEBHOOK_SECRET_CONTEXT)

    def seal_variables(self, variables: Mapping[str, Any]) -> str:
        return self.seal_json(dict(variables), context=VARIABLES_CONTEXT)

    def open_variables(self, sealed: str) -> dict[str, Any]:
        opened = self.open_json(sealed, context=VARIABLES_CONTEXT)
        if not isinstance(opened, dict):
            raise sealing.SealedDataError("sealed variables are not an object")
        return opened


def without_one_time_secrets(template: str, variables: Mapping[str, Any]) -> dict[str, Any] | None:
    """``variables`` without the template's one-time secrets; ``None`` when it has none to remove."""
    secret = ONE_TIME_VARIABLES.get(template, ())
    if not any(name in variables for name in secret):
        return None
    return {name: value for name, value in variables.items() if name not in secret}
