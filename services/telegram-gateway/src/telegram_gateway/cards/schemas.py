"""The order as a card shows it: the fields of order-api's order payload that the notifier forwards."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from servicekit.bounds import DECIMAL_PATTERN

OrderStatus = Literal[
    "awaiting_address", "queued", "awaiting_deposit", "in_progress", "completed", "cancelled", "expired"
]
TERMINAL_STATUSES = frozenset({"completed", "cancelled", "expired"})

OrderId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9-]{1,36}$"),
    Field(description="order-api's order id (a UUID).", examples=["0b7c3f9e-5d1a-4c2b-9e8f-1a2b3c4d5e6f"]),
]
Code = Annotated[str, StringConstraints(min_length=1, max_length=16)]


def _decimal_text(value: str) -> str:
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError('must be a decimal number as a string, like "0.05"') from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError("must be a finite, non-negative decimal")
    return value


AmountText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=60),
    AfterValidator(_decimal_text),
    Field(
        description="Exact decimal as a string; shown as given, never rounded.",
        examples=["0.05"],
        json_schema_extra={"pattern": DECIMAL_PATTERN},
    ),
]


class OrderView(BaseModel):
    """What an order card shows (``order`` of ``POST /v1/messages``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: OrderId
    status: OrderStatus
    from_currency: Code
    from_network: Code
    to_currency: Code
    to_network: Code
    amount: AmountText
    priority: Code = Field(examples=["normal"], description="normal, priority or vip.")
    deposit_address: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    queue_position: int | None = Field(
        default=None,
        ge=0,
        description="Accepted for the record; a card never shows it (it changes whenever the queue moves).",
    )
    expires_at: AwareDatetime | None = None
    operator_id: Annotated[str, StringConstraints(max_length=36)] | None = None
    operator_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    version: int = Field(
        ge=0, description="order-api's version: a card never shows an older one over a newer."
    )
