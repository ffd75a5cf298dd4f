"""Request and response bodies of the order API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
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


TxHash = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
TRON_TX_EXAMPLE = "8b63c3b7e34f45b4a2d1f3e9d3c1e5a7b9f0e2d4c6a8b0d2e4f6a8c0e2b4d6f8"  # USDT on TRC20
BTC_TX_EXAMPLE = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


class DepositCreate(BaseModel):
    """The customer's deposit as the operator saw it on the chain."""

    model_config = ConfigDict(extra="forbid")

    tx_hash: TxHash = Field(
        description="The deposit's transaction hash, in the format of the order's `from_network` (UTXO chains "
        "and TRON: 64 hex digits; EVM chains: `0x` and 64 hex digits; Solana: base58; TON: hex or base64url).",
        examples=[BTC_TX_EXAMPLE],
    )
    amount: ExactAmount = Field(
        description="What arrived, in `from_currency`: more than 0, no finer than the currency's precision."
    )
    seen_at: AwareDatetime | None = Field(default=None, description="When it was seen; default: now.")


class PayoutCreate(BaseModel):
    """The payout the desk sent."""

    model_config = ConfigDict(extra="forbid")

    tx_hash: TxHash = Field(
        description="The payout's transaction hash, in the format of the order's `to_network`.",
        examples=[TRON_TX_EXAMPLE],
    )
    amount: ExactAmount = Field(description="What was sent, in `to_currency`.")
    network_fee: ExactAmount | None = Field(
        default=None, description="The network fee paid, in `to_currency`, if known."
    )


class TransactionCreate(BaseModel):
    """What actually moved: the deposit received and the payout sent."""

    model_config = ConfigDict(extra="forbid")

    deposit: DepositCreate | None = Field(
        default=None,
        description="Required, unless a hold for support (`escalate` with `deposit`) recorded it already.",
    )
    payout: PayoutCreate
    payment_difference: Literal["adjusted_payout"] | None = Field(
        default=None,
        description="A deposit that differs from the ordered amount is `409 payment_mismatch` unless the "
        "payout was adjusted to it (`adjusted_payout`): the order then completes as underpaid or overpaid.",
    )


class DepositRead(BaseModel):
    tx_hash: str | None = Field(description="Null once the customer is erased.")
    amount: DecimalString = Field(description="What arrived, in `from_currency`.")
    seen_at: datetime


class PayoutRead(BaseModel):
    tx_hash: str | None = Field(
        description="Null once the customer is erased (on a block explorer it shows the payout address)."
    )
    amount: DecimalString = Field(description="What was sent, in `to_currency`.")
    network_fee: DecimalString | None = Field(description="In `to_currency`; null when not known.")


class TransactionRead(BaseModel):
    """What moved for the order, as recorded by the desk."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "deposit": {
                        "tx_hash": BTC_TX_EXAMPLE,
                        "amount": "0.049",
                        "seen_at": "2026-12-06T10:00:00Z",
                    },
                    "payout": {"tx_hash": TRON_TX_EXAMPLE, "amount": "1489.99", "network_fee": "1.2"},
                    "payment": "underpaid",
                    "difference": "-0.001",
                }
            ]
        }
    )

    deposit: DepositRead | None = Field(
        description="Recorded on completion, or earlier by a hold for support."
    )
    payout: PayoutRead | None = Field(description="Recorded on completion.")
    payment: Literal["exact", "underpaid", "overpaid"] | None = Field(
        description="The deposit against the ordered `amount`, once completed."
    )
    difference: DecimalString | None = Field(
        description="Received minus ordered, in `from_currency` (negative: underpaid); null without a deposit."
    )


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
    transaction: TransactionRead | None = Field(
        default=None,
        description="What actually moved (deposit, payout, outcome); null until something is recorded.",
    )


class OrderCreated(OrderRead):
    session_token: str | None = Field(
        default=None,
        description="Shown once, when this request opened a session: it reads and cancels this order only. "
        "A session over all orders needs the emailed one-time code (/v1/auth/email-code).",
    )


class OrderPage(Page[OrderRead]):
    """A customer's orders, newest first."""
