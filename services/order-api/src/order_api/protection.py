"""Customer data protection (DESIGN §5): encryption at rest and the blind index.

- **Sealing.** Personal data (a customer's email, an order's payout address) is stored only sealed with
  AES-256-GCM: a random 96-bit nonce per value, and a *context* (``"customer.email"``,
  ``"order.payout_address"``) as associated data, so a sealed value copied into another column does not
  open there. A sealed value reads ``<key_id>:<base64url(nonce + ciphertext)>``.
- **Rotation without downtime.** ``data_keys`` maps key ids to keys; new data is sealed with
  ``data_key_current``, and every id still listed keeps opening what it sealed. To rotate: add the new key
  to every replica, then make it current, then (after re-sealing, if ever) drop the old one.
- **Blind index.** A customer is found by ``HMAC-SHA256(blind_index_key, normalised email)``: equal emails
  give equal indexes, and without the key the index reveals nothing. The blind-index key cannot rotate
  without recomputing every index, so it is one key, not a ring.

Keys come from settings (``ORDER_API_DATA_KEYS``, ``ORDER_API_DATA_KEY_CURRENT``, ``ORDER_API_BLIND_INDEX_KEY``).
Outside production, when none is configured, a key set is generated once and kept in
``var/order-api-secrets.json`` (mode 0600) so a laptop or demo desk can still read its data after a
restart; in production missing keys stop the service at startup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from servicekit.private_files import private_file, write_private_file

if TYPE_CHECKING:
    from order_api.settings import Settings

log = logging.getLogger("order_api.protection")

KEY_BYTES = 32
NONCE_BYTES = 12
DEV_SECRETS_FILE = "order-api-secrets.json"
DEV_KEY_ID = "dev1"


class DataProtectionConfigError(RuntimeError):
    """The data-protection keys are missing or malformed: the service cannot start."""


class SealedDataError(ValueError):
    """A sealed value does not open: unknown key id, another context, or tampered with."""


def decode_key(
    value: str, *, name: str, min_bytes: int = KEY_BYTES, max_bytes: int | None = KEY_BYTES
) -> bytes:
    """A key given as base64 (standard or URL-safe alphabet, padding optional)."""
    text = value.strip().rstrip("=")
    try:
        # altchars map "-" and "_" onto "+" and "/", so both alphabets are accepted.
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataProtectionConfigError(f"{name} is not valid base64") from exc
    if len(raw) < min_bytes or (max_bytes is not None and len(raw) > max_bytes):
        wanted = f"{min_bytes}" if max_bytes == min_bytes else f"at least {min_bytes}"
        raise DataProtectionConfigError(f"{name} must decode to {wanted} bytes, not {len(raw)}")
    return raw


def new_key() -> str:
    """A fresh random 256-bit key, base64-encoded as settings take it."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


class DataProtection:
    """Seals and opens personal data and computes the email blind index. Built once per app."""

    def __init__(self, *, keys: Mapping[str, bytes], current_key_id: str, blind_index_key: bytes) -> None:
        if not keys:
            raise DataProtectionConfigError("at least one data key is required")
        for key_id, key in keys.items():
            if not key_id or ":" in key_id:
                raise DataProtectionConfigError(f"data key id {key_id!r} must be non-empty and free of ':'")
            if len(key) != KEY_BYTES:
                raise DataProtectionConfigError(f"data key {key_id!r} must be {KEY_BYTES} bytes (AES-256)")
        if current_key_id not in keys:
            raise DataProtectionConfigError(
                f"the current data key id {current_key_id!r} is not among the data keys {sorted(keys)}"
            )
        if len(blind_index_key) < KEY_BYTES:
            raise DataProtectionConfigError(f"the blind-index key must have at least {KEY_BYTES} bytes")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = current_key_id
        self._blind_index_key = blind_index_key

    def __repr__(self) -> str:
        return f"DataProtection(key_ids={sorted(self._ciphers)}, current={self.current_key_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> DataProtection:
        """The keys configured in ``settings``; outside production, generated once and kept under var/."""
        prefix = str(settings.model_config.get("env_prefix", "")).upper()
        names = {
            "data_keys": f"{prefix}DATA_KEYS",
            "data_key_current": f"{prefix}DATA_KEY_CURRENT",
            "blind_index_key": f"{prefix}BLIND_INDEX_KEY",
        }
        current, blind = settings.data_key_current, settings.blind_index_key
        configured = {
            "data_keys": bool(settings.data_keys),
            "data_key_current": current is not None,
            "blind_index_key": blind is not None,
        }
        if settings.data_keys and current is not None and blind is not None:
            keys = {
                key_id: decode_key(secret.get_secret_value(), name=f"{names['data_keys']}[{key_id}]")
                for key_id, secret in settings.data_keys.items()
            }
            return cls(
                keys=keys,
                current_key_id=current,
                blind_index_key=decode_key(
                    blind.get_secret_value(), name=names["blind_index_key"], max_bytes=None
                ),
            )
        missing = [names[field] for field, present in configured.items() if not present]
        if any(configured.values()) or settings.environment == "production":
            # A partial configuration is never completed with generated keys: data sealed with a key that
            # exists on one machine only would be unreadable everywhere else.
            raise DataProtectionConfigError(
                "customer data protection keys are not configured: set "
                + ", ".join(missing)
                + f' (base64 32-byte keys, e.g. {names["data_keys"]}=\'{{"k1": "<key>"}}\', '
                + f"{names['data_key_current']}=k1)"
            )
        return cls._from_dev_file(Path(settings.var_dir) / DEV_SECRETS_FILE)

    @classmethod
    def _from_dev_file(cls, path: Path) -> DataProtection:
        stored = _load_or_create_dev_secrets(path)
        try:
            return cls(
                keys={
                    key_id: decode_key(value, name=f"{path}: data_keys[{key_id}]")
                    for key_id, value in stored["data_keys"].items()
                },
                current_key_id=stored["data_key_current"],
                blind_index_key=decode_key(stored["blind_index_key"], name=f"{path}: blind_index_key"),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataProtectionConfigError(f"{path} is not a valid secrets file; remove it") from exc

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` with the current key, bound to ``context``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.current_key_id].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self.current_key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, sealed: str, *, context: str) -> str:
        """Decrypt a value sealed with any key still configured; ``SealedDataError`` when it does not open."""
        key_id, separator, body = sealed.partition(":")
        cipher = self._ciphers.get(key_id)
        if not separator or cipher is None:
            raise SealedDataError(f"sealed with an unknown key id {key_id!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:
            raise SealedDataError("sealed value is not valid base64url") from exc
        if len(raw) <= NONCE_BYTES:
            raise SealedDataError("sealed value is too short")
        try:
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag as exc:
            raise SealedDataError("sealed value does not open (wrong context, or tampered with)") from exc

    def email_index(self, email: str) -> str:
        """The blind index of an email: hex HMAC-SHA256 of its normalised form."""
        return hmac.new(
            self._blind_index_key, self.normalise_email(email).encode(), hashlib.sha256
        ).hexdigest()

    def keyed_digest(self, value: str, *, purpose: str) -> str:
        """Hex HMAC-SHA256 of ``value`` under the blind-index key, separated by ``purpose`` (e.g. a one-time
        code's hash: without the key, a stolen table cannot be brute-forced through the code space)."""
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._blind_index_key, message, hashlib.sha256).hexdigest()

    @staticmethod
    def normalise_email(email: str) -> str:
        """Surrounding whitespace removed, the whole address lower-cased.

        The local part is lower-cased too: RFC 5321 lets a server treat it case-sensitively, but no mailbox
        provider customers use does, and ``John@x`` and ``john@x`` must be one customer (otherwise one person
        becomes two, and case-variants would dodge per-customer limits). Provider-specific rewrites (Gmail dots,
        ``+tags``) are *not* applied: they would merge mailboxes that other providers keep apart.
        """
        return email.strip().lower()


def _load_or_create_dev_secrets(path: Path) -> dict[str, Any]:
    if not path.exists():
        _create_dev_secrets(path)
    private_file(path)  # made by an older version: readable by others
    loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise DataProtectionConfigError(f"{path} is not a valid secrets file; remove it")
    return loaded


def _create_dev_secrets(path: Path) -> None:
    """Write a fresh key set atomically: the file appears complete, mode 0600, or not at all. When several
    processes start together, the first link wins and the others read its keys."""
    content = json.dumps(
        {
            "note": "Development keys of order-api, generated because none were configured. Not for production.",
            "data_keys": {DEV_KEY_ID: new_key()},
            "data_key_current": DEV_KEY_ID,
            "blind_index_key": new_key(),
        },
        indent=2,
    )
    if write_private_file(path, content, replace=False):
        log.warning(
            "no data protection keys configured: generated development keys", extra={"path": str(path)}
        )
