"""Personal data sealed at rest and in events: AEAD key rings with key ids, and a keyed blind index.

- **Sealing.** A value is sealed with AES-256-GCM: a random 96-bit nonce per value, and a *context*
  (``"customer.email"``, ``"notification.recipient"``) as associated data, so a sealed value copied into another
  column does not open there. A sealed value reads ``<key_id>:<base64url(nonce + ciphertext)>``.
- **Rotation without downtime.** A :class:`Keyring` maps key ids to keys; new data is sealed with the current
  id, and every id still listed keeps opening what it sealed. To rotate: add the new key to every replica,
  then make it current, then (after re-sealing, if ever) drop the old one.
- **Blind index.** A value is found by ``HMAC-SHA256(blind_index_key, normalised value)``: equal values give
  equal indexes, and without the key the index reveals nothing. The blind-index key cannot rotate without
  recomputing every index, so it is one key, not a ring.
- **Sealed events.** Personal data an event must carry (the address to write to, a one-time code) travels
  in its payload's ``sealed`` field, sealed with the *event* key ring that the publisher and the receiver
  share, bound to the event's type and aggregate id: the outbox row, and its page in the WAL, never hold it
  in clear.

Keys come from settings (:class:`servicekit.settings.DataKeySettings`, ``EventKeySettings``). Outside
production, when none is configured, a key set is generated once and kept in a file under ``var/`` (mode
0600) so a laptop or demo desk can still read its data after a restart; production refuses to start
without configured keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from servicekit.outbox import REDACT_AFTER_DELIVERY, EventEnvelope
from servicekit.private_files import private_file, write_private_file
from servicekit.settings import DataKeySettings, EventKeySettings, ServiceSettings

log = logging.getLogger("servicekit.sealing")

KEY_BYTES = 32
NONCE_BYTES = 12
DEV_KEY_ID = "dev1"
EVENT_SECRETS_FILE = "event-secrets.json"
"""The development event keys, shared by the services that run with the same ``var/`` (``make run``)."""
SEALED_FIELD = "sealed"
"""The payload field an event's personal data travels in, sealed with the event key ring."""


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


class Keyring:
    """AES-256-GCM keys by id: seals with the current one, opens with any still listed."""

    def __init__(self, *, keys: Mapping[str, bytes], current_key_id: str, name: str = "data") -> None:
        if not keys:
            raise DataProtectionConfigError(f"at least one {name} key is required")
        for key_id, key in keys.items():
            if not key_id or ":" in key_id:
                raise DataProtectionConfigError(f"{name} key id {key_id!r} must be non-empty and free of ':'")
            if len(key) != KEY_BYTES:
                raise DataProtectionConfigError(f"{name} key {key_id!r} must be {KEY_BYTES} bytes (AES-256)")
        if current_key_id not in keys:
            raise DataProtectionConfigError(
                f"the current {name} key id {current_key_id!r} is not among the {name} keys {sorted(keys)}"
            )
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.current_key_id = current_key_id
        self.name = name

    def __repr__(self) -> str:
        return f"Keyring({self.name}, key_ids={sorted(self._ciphers)}, current={self.current_key_id!r})"

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
            raise SealedDataError(f"sealed with an unknown key id {key_id!r} ({self.name} keys)")
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

    def seal_json(self, value: Any, *, context: str) -> str:
        """``value`` as compact JSON, sealed."""
        return self.seal(json.dumps(value, separators=(",", ":"), ensure_ascii=False), context=context)

    def open_json(self, sealed: str, *, context: str) -> Any:
        return json.loads(self.open(sealed, context=context))

    @classmethod
    def events_from_settings(cls, settings: ServiceSettings) -> Keyring:
        """The event key ring of ``settings`` (:class:`EventKeySettings`); outside production, generated once
        and kept in ``var/event-secrets.json``, which services sharing that ``var/`` share."""
        if not isinstance(settings, EventKeySettings):
            raise TypeError(f"{type(settings).__name__} has no event key settings")
        material = _key_material(
            settings,
            ring=("event_keys", settings.event_keys),
            current=("event_key_current", settings.event_key_current),
            dev_file=EVENT_SECRETS_FILE,
            what="event",
        )
        return cls(keys=material.keys, current_key_id=material.current, name="event")


class DataProtection:
    """A service's personal data at rest (its data key ring and blind index), and, when it exchanges
    personal data with a peer, the event key ring (``events``). Built once per app; a service names the file
    its development keys are kept in by subclassing with ``dev_file``."""

    dev_file: ClassVar[str] = "secrets.json"

    def __init__(
        self,
        *,
        keys: Mapping[str, bytes],
        current_key_id: str,
        blind_index_key: bytes,
        events: Keyring | None = None,
    ) -> None:
        self.keyring = Keyring(keys=keys, current_key_id=current_key_id)
        if len(blind_index_key) < KEY_BYTES:
            raise DataProtectionConfigError(f"the blind-index key must have at least {KEY_BYTES} bytes")
        self._blind_index_key = blind_index_key
        self.events = events

    def __repr__(self) -> str:
        return f"DataProtection({self.keyring!r}, events={self.events!r})"

    @property
    def current_key_id(self) -> str:
        return self.keyring.current_key_id

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Self:
        """The keys configured in ``settings`` (:class:`DataKeySettings`, and :class:`EventKeySettings` when
        the service has them); outside production, generated once and kept in ``var/<dev_file>``."""
        if not isinstance(settings, DataKeySettings):
            raise TypeError(f"{type(settings).__name__} has no data key settings")
        material = _key_material(
            settings,
            ring=("data_keys", settings.data_keys),
            current=("data_key_current", settings.data_key_current),
            extra=("blind_index_key", settings.blind_index_key),
            dev_file=cls.dev_file,
            what="customer data protection",
        )
        events = Keyring.events_from_settings(settings) if isinstance(settings, EventKeySettings) else None
        return cls(
            keys=material.keys,
            current_key_id=material.current,
            blind_index_key=decode_key(material.extra, name=material.extra_name, max_bytes=None),
            events=events,
        )

    def seal(self, plaintext: str, *, context: str) -> str:
        return self.keyring.seal(plaintext, context=context)

    def open(self, sealed: str, *, context: str) -> str:
        return self.keyring.open(sealed, context=context)

    def seal_json(self, value: Any, *, context: str) -> str:
        return self.keyring.seal_json(value, context=context)

    def open_json(self, sealed: str, *, context: str) -> Any:
        return self.keyring.open_json(sealed, context=context)

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

    def event_keyring(self) -> Keyring:
        if self.events is None:
            raise DataProtectionConfigError("this service has no event keys")
        return self.events

    def sealed_event_fields(
        self, fields: Mapping[str, Any], *, event_type: str, aggregate_id: str | None
    ) -> dict[str, Any]:
        return sealed_event_fields(
            self.event_keyring(), fields, event_type=event_type, aggregate_id=aggregate_id
        )

    def open_sealed_event(self, envelope: EventEnvelope) -> EventEnvelope:
        return open_sealed_event(self.event_keyring(), envelope)


def sealed_event_fields(
    keyring: Keyring, fields: Mapping[str, Any], *, event_type: str, aggregate_id: str | None
) -> dict[str, Any]:
    """The payload fields carrying ``fields`` sealed for the receiver (see :func:`open_sealed_event`), bound
    to the event's type and aggregate; the sealed copy is masked in the outbox once delivered."""
    return {
        SEALED_FIELD: keyring.seal_json(dict(fields), context=_event_context(event_type, aggregate_id)),
        REDACT_AFTER_DELIVERY: [SEALED_FIELD],
    }


def open_sealed_payload(
    keyring: Keyring, payload: Mapping[str, Any], *, event_type: str, aggregate_id: str | None
) -> dict[str, Any]:
    """``payload`` with its ``sealed`` fields opened into it (unchanged when it has none); ``SealedDataError``
    when they do not open."""
    sealed = payload.get(SEALED_FIELD)
    if not isinstance(sealed, str):
        return dict(payload)
    opened = keyring.open_json(sealed, context=_event_context(event_type, aggregate_id))
    if not isinstance(opened, dict):
        raise SealedDataError("the sealed fields of an event are not an object")
    return {**{k: v for k, v in payload.items() if k != SEALED_FIELD}, **opened}


def open_sealed_event(keyring: Keyring, envelope: EventEnvelope) -> EventEnvelope:
    """``envelope`` with its sealed personal data opened into the payload, in memory only."""
    if not isinstance(envelope.payload.get(SEALED_FIELD), str):
        return envelope
    payload = open_sealed_payload(
        keyring, envelope.payload, event_type=envelope.type, aggregate_id=envelope.aggregate_id
    )
    return envelope.model_copy(update={"payload": payload})


def _event_context(event_type: str, aggregate_id: str | None) -> str:
    return f"event:{event_type}:{aggregate_id or ''}"


# --- where the keys come from ----------------------------------------------------------------------------


class _KeyMaterial:
    def __init__(self, keys: dict[str, bytes], current: str, extra: str, extra_name: str) -> None:
        self.keys, self.current, self.extra, self.extra_name = keys, current, extra, extra_name


def _key_material(
    settings: ServiceSettings,
    *,
    ring: tuple[str, Mapping[str, SecretStr]],
    current: tuple[str, str | None],
    dev_file: str,
    what: str,
    extra: tuple[str, SecretStr | None] | None = None,
) -> _KeyMaterial:
    """A key ring (and one extra key) as configured, or, outside production with none of them configured,
    from the development file ``var/<dev_file>`` (created on first use)."""
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    fields = [ring[0], current[0], *([extra[0]] if extra else [])]
    names = {field: f"{prefix}{field.upper()}" for field in fields}
    configured = {ring[0]: bool(ring[1]), current[0]: current[1] is not None}
    if extra:
        configured[extra[0]] = extra[1] is not None
    if all(configured.values()):
        return _KeyMaterial(
            keys={
                key_id: decode_key(secret.get_secret_value(), name=f"{names[ring[0]]}[{key_id}]")
                for key_id, secret in ring[1].items()
            },
            current=str(current[1]),
            extra=extra[1].get_secret_value() if extra and extra[1] is not None else "",
            extra_name=names[extra[0]] if extra else "",
        )
    missing = [names[field] for field, present in configured.items() if not present]
    if any(configured.values()) or settings.environment == "production":
        # A partial configuration is never completed with generated keys: data sealed with a key that
        # exists on one machine only would be unreadable everywhere else.
        raise DataProtectionConfigError(
            f"{what} keys are not configured: set "
            + ", ".join(missing)
            + f' (base64 32-byte keys, e.g. {names[ring[0]]}=\'{{"k1": "<key>"}}\', {names[current[0]]}=k1)'
        )
    path = Path(settings.var_dir) / dev_file

    def fresh() -> dict[str, Any]:
        values: dict[str, Any] = {ring[0]: {DEV_KEY_ID: new_key()}, current[0]: DEV_KEY_ID}
        if extra:
            values[extra[0]] = new_key()
        return values

    stored = load_or_create_dev_file(path, fresh, note=f"Development {what} keys of {settings.service_name}")
    try:
        return _KeyMaterial(
            keys={
                key_id: decode_key(value, name=f"{path}: {ring[0]}[{key_id}]")
                for key_id, value in stored[ring[0]].items()
            },
            current=str(stored[current[0]]),
            extra=str(stored[extra[0]]) if extra else "",
            extra_name=f"{path}: {extra[0]}" if extra else "",
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataProtectionConfigError(f"{path} is not a valid secrets file; remove it") from exc


def load_or_create_dev_file(path: Path, fresh: Callable[[], dict[str, Any]], *, note: str) -> dict[str, Any]:
    """The JSON object in ``path``, written first (``fresh()`` plus a note, mode 0600, atomically: when
    several processes start together, the first one's file wins and all read it) when it does not exist."""
    if not path.exists():
        content = {"note": f"{note}, generated because none were configured. Not for production.", **fresh()}
        if write_private_file(path, json.dumps(content, indent=2), replace=False):
            log.warning("no keys configured: generated development keys", extra={"path": str(path)})
    private_file(path)  # made by an older version: readable by others
    loaded: Any = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise DataProtectionConfigError(f"{path} is not a valid secrets file; remove it")
    return loaded
