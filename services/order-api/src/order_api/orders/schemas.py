"""Request and response bodies of the order API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from order_api.customers.schemas import CustomerEmail
from servicekit.bounds import DecimalString, ExactAmount
from servicekit.pagination import Page

CurrencyCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=2, max_length=10)
]
NetworkCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=16)]


def _unquoted(value: object) -> object:
    """An entity tag's opaque part (``"3"`` → ``3``); a bare version passes as it is."""
    if isinstance(value, str) and len(value) > 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


OrderVersionTag = Annotated[
    int,
    BeforeValidator(_unquoted),
    WithJsonSchema({"type": "string", "pattern": r'^("[0-9]{1,18}"|[0-9]{1,18})$', "examples": ['"1"']}),
]
"""An order's ``version`` as ``If-Match`` carries it: an entity tag (``"3"``, as RFC 9110 writes it) or the bare
number (``3``). Declared a string, so generated clients send what they are given rather than an integer
that an HTTP library may refuse as a header value."""


class OrderCreate(BaseModel):
    """A customer's order: send ``amount`` of ``from_currency``, receive ``to_currency`` at ``payout_address``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "customer@example.com",
                    "from_currency": "BTC",
                    "to_currency": "USDT",
                    "to_network": "TRC20",
                    "amount": "0.05",
                    "payout_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
                    "locale": "en",
                }
            ]
        },
    )

    email: CustomerEmail = Field(description="Where the desk writes about this order.")
    from_currency: CurrencyCode = Field(description="What the customer sends: BTC, ETH or USDT.")
    from_network: NetworkCode | None = Field(
        default=None,
        description="Network of `from_currency` (USDT: TRC20 or ERC20); its default when omitted.",
    )
    to_currency: CurrencyCode = Field(description="What the customer receives.")
    to_network: NetworkCode | None = Field(default=None, description="Network of `to_currency`.")
    amount: ExactAmount = Field(
        description='Amount of `from_currency`: an exact decimal string (`"0.05"`; a JSON number is accepted too).'
    )
    payout_address: str = Field(
        min_length=1, max_length=128, description="The customer's address for the payout."
    )
    locale: Literal["en", "ru"] = Field(default="en", description="Language of the emails.")

    @field_validator("amount", mode="before")
    @classmethod
    def _no_floats_beyond_json(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("amount must be a decimal number")
        return value


class OrderRead(BaseModel):
    """An order as its customer sees it."""

    id: str
    status: Literal[
        "awaiting_address", "queued", "awaiting_deposit", "in_progress", "completed", "cancelled", "expired"
    ] = Field(
        description="`awaiting_address`: accepted, its deposit address is on the way (emailed when ready); "
        "`queued`: every address is busy, it has a place in the queue; `awaiting_deposit`: send the funds to "
        "`deposit_address`; `in_progress`: an operator handles it; then `completed`, `cancelled` or `expired`."
    )
    from_currency: str
    from_network: str
    to_currency: str
    to_network: str
    amount: DecimalString
    payout_address: str | None = Field(description="Where the customer is paid; null once they were erased.")
    deposit_address: str | None = Field(
        description="Where to send the funds; null while the order awaits its address or is queued."
    )
    queue_position: int | None = Field(
        description="Place in the wait queue while queued (1 = next); null otherwise (closed orders too)."
    )
    estimated_wait_seconds: int | None = Field(
        description="The queue's estimate while queued; null otherwise."
    )
    priority: Literal["normal", "priority", "vip"]
    expires_at: datetime | None = Field(
        description="The order expires unless paid (or, while queued, served) by then."
    )
    created_at: datetime
    updated_at: datetime
    version: int = Field(
        description="Bumped on every change; send it as If-Match to change the order safely."
    )


class OrderCreated(OrderRead):
    session_token: str | None = Field(
        default=None,
        description="Shown once, when this request opened a session: it reads and cancels this order only. "
        "A session over all orders needs the emailed one-time code (/v1/auth/email-code).",
    )


class OrderPage(Page[OrderRead]):
    """A customer's orders, newest first."""
