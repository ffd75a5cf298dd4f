"""Customer data protection: encryption at rest, the blind index, and personal data sealed in events.

The mechanism is servicekit's (:mod:`servicekit.sealing`, shared with the notifier); this module names
order-api's keys: ``ORDER_API_DATA_KEYS``, ``ORDER_API_DATA_KEY_CURRENT``, ``ORDER_API_BLIND_INDEX_KEY`` for
what it keeps (a customer's email, an order's payout address), and ``ORDER_API_EVENT_KEYS`` /
``ORDER_API_EVENT_KEY_CURRENT`` (the same ring as the notifier's ``NOTIFIER_EVENT_KEYS``) for what it tells
the notifier (the address to write to, a one-time code). Outside production, when none is configured, the
data keys are generated once and kept in ``var/order-api-secrets.json`` (mode 0600), the event keys in
``var/event-secrets.json``; in production missing keys stop the service at startup.
"""

from __future__ import annotations

from servicekit import sealing
from servicekit.sealing import DataProtectionConfigError, SealedDataError, decode_key, new_key

DEV_SECRETS_FILE = "order-api-secrets.json"

__all__ = [
    "DEV_SECRETS_FILE",
    "DataProtection",
    "DataProtectionConfigError",
    "SealedDataError",
    "decode_key",
    "new_key",
]


class DataProtection(sealing.DataProtection):
    """Seals and opens customer data, computes the email blind index, seals what events carry."""

    dev_file = DEV_SECRETS_FILE
