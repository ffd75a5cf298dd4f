"""Field types for customer data at the edge, shared by every schema that takes an email or a locale.

``email-validator`` is not a dependency, so :data:`CustomerEmail` checks the shape of an address with a
deliberately plain rule (one ``@``, a dotted domain, no spaces or control characters, RFC 5321 lengths). It
keeps typos and junk out; whether the mailbox exists is proven by the emailed code, never by a regex.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

EMAIL_MAX_LENGTH = 254
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_EMAIL = re.compile(rf"{_LOCAL_PART}@{_DOMAIN}")
_LOCALE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,4})?")


def check_email(value: str) -> str:
    """``value`` without surrounding whitespace, if it looks like an email address."""
    email = value.strip()
    if len(email) > EMAIL_MAX_LENGTH:
        raise ValueError(f"an email address has at most {EMAIL_MAX_LENGTH} characters")
    local, _, _ = email.rpartition("@")
    if len(local) > 64 or not _EMAIL.fullmatch(email):
        raise ValueError("not a valid email address (expected something like name@example.com)")
    return email


def check_locale(value: str) -> str:
    locale = value.strip()
    if not _LOCALE.fullmatch(locale):
        raise ValueError("not a language tag (expected something like 'en', 'ru' or 'pt-BR')")
    return locale


CustomerEmail = Annotated[
    str,
    Field(max_length=EMAIL_MAX_LENGTH + 20, examples=["alice@example.com"], description="An email address."),
    AfterValidator(check_email),
]
Locale = Annotated[
    str,
    Field(max_length=8, examples=["en", "ru"], description="Language of the messages the customer gets."),
    AfterValidator(check_locale),
]


class CustomerErasureRead(BaseModel):
    """A customer's erasure: who and when (the same answer however often it is asked for)."""

    customer_id: str
    erased_at: datetime = Field(description="When the customer was erased (UTC).")
