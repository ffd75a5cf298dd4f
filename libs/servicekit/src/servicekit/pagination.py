"""Keyset cursors for the services' lists (newest first by ``(moment, id)``): opaque to clients, checked
when they come back."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from servicekit.errors import ValidationFailedError


def encode_cursor(prefix: str, moment: datetime, row_id: str) -> str:
    raw = f"{prefix}|{moment.isoformat()}|{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(prefix: str, cursor: str) -> tuple[datetime, str]:
    """``(moment, id)`` of a cursor made by :func:`encode_cursor` with the same ``prefix``; anything else is a
    422 naming ``cursor``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw.startswith(f"{prefix}|"):
            moment, row_id = raw.removeprefix(f"{prefix}|").split("|", 1)
            parsed = datetime.fromisoformat(moment)
            if parsed.tzinfo is not None and row_id:
                return parsed, row_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationFailedError.for_field("cursor", "not a cursor this service issued", kind="invalid_cursor")
