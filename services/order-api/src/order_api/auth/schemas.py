"""Request and response bodies of ``/v1/auth``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from order_api.customers.schemas import CustomerEmail, Locale


class EmailCodeCreate(BaseModel):
    """Ask for a one-time code to be emailed."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "customer@example.com", "locale": "en"}]}
    )

    email: CustomerEmail
    locale: Locale | None = Field(
        default=None, description="Language of the email; the customer's by default."
    )


class EmailCodeRead(BaseModel):
    """The same answer whether or not a customer has this email (no account enumeration)."""

    status: Literal["sent"] = "sent"
    expires_in_seconds: int = Field(description="How long a code sent now stays valid.")


class SessionCreate(BaseModel):
    """Prove the mailbox with the emailed code, for a full session."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "customer@example.com", "code": "042917"}]}
    )

    email: CustomerEmail
    code: str = Field(min_length=1, max_length=32, examples=["042917"], description="The 6-digit code.")

    @field_validator("code")
    @classmethod
    def _without_spaces(cls, value: str) -> str:
        # Codes get pasted as "042 917" or with a trailing newline.
        return re.sub(r"[\s-]", "", value)


class IssuedSessionRead(BaseModel):
    """A new session. ``session_token`` is shown only here: send it as ``Authorization: Bearer <token>``."""

    session_token: str = Field(examples=["cs_3q2-7wEJ..."])
    kind: Literal["order", "full"]
    expires_at: datetime
    customer_id: str


class SessionRead(BaseModel):
    """The session a request is made with."""

    customer_id: str
    kind: Literal["order", "full"]
    order_id: str | None = Field(description="For an order session: the one order it reaches.")
    expires_at: datetime
