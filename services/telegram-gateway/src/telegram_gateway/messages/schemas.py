"""Bodies of ``POST /v1/messages`` (contract B between the notifier and the gateway)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.config import JsonDict

from telegram_gateway.cards.schemas import OrderView

MessageKindName = Literal["order_card", "alert"]
ChatName = Literal["operators", "support"]
OrderEvent = Literal[
    "order.created",
    "order.taken",
    "order.status_changed",
    "order.released",
    "order.assignment_timed_out",
    "order.escalated",
    "order.escalation_resolved",
    "order.reassigned",
    "order.assigned",
    "order.assignment_lapsed",
]
Outcome = Literal["posted", "edited", "no_card", "duplicate"]


class AlertView(BaseModel):
    """An operational alert (the pool runs low, deliveries fail ...)."""

    model_config = ConfigDict(extra="forbid")

    alert_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    key: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        examples=["pool.low:BTC:bitcoin"]
    )
    severity: Literal["warning", "critical", "emergency", "resolved"]
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    text: Annotated[str, StringConstraints(max_length=3000)]


ORDER_EXAMPLE: JsonDict = {
    "order_id": "0b7c3f9e-5d1a-4c2b-9e8f-1a2b3c4d5e6f",
    "status": "awaiting_deposit",
    "from_currency": "BTC",
    "from_network": "bitcoin",
    "to_currency": "USDT",
    "to_network": "TRC20",
    "amount": "0.05",
    "priority": "normal",
    "deposit_address": "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
    "queue_position": None,
    "expires_at": "2026-11-21T13:34:00+00:00",
    "operator_id": None,
    "operator_name": None,
    "version": 1,
}
"""The order of the documented example card (the test harness's fake order-api starts its orders from it)."""


class ReassignmentView(BaseModel):
    """Who an order was handed from and to (``order.reassigned``): both operators are told privately."""

    model_config = ConfigDict(extra="forbid")

    previous_operator_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    previous_telegram_user_id: int | None = Field(default=None, gt=0, lt=2**63)
    telegram_user_id: int | None = Field(default=None, gt=0, lt=2**63, description="The new holder's.")
    actor_role: Annotated[str, StringConstraints(max_length=16)] | None = None


class AssignmentView(BaseModel):
    """Auto-assignment (``order.assigned``, ``order.assignment_lapsed``): the operator to tell privately, and
    when the assignment lapses unless they accept it."""

    model_config = ConfigDict(extra="forbid")

    telegram_user_id: int | None = Field(default=None, gt=0, lt=2**63, description="The operator's.")
    lapses_at: AwareDatetime | None = Field(default=None, description="order.assigned only.")


class MessageCreate(BaseModel):
    """An order card (``kind: order_card`` with ``event`` and ``order``) or an alert (``kind: alert`` with
    ``alert``). ``message_id`` is the notifier's notification id: a repeat posts nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "message_id": "5f0c6a2e-8a43-4f5e-9b1d-2c3d4e5f6a7b",
                    "kind": "order_card",
                    "chat": "operators",
                    "event": "order.created",
                    "order": ORDER_EXAMPLE,
                    "note": None,
                }
            ]
        },
    )

    message_id: uuid.UUID
    kind: MessageKindName
    chat: ChatName = Field(
        default="operators", description="Where to post; the support chat falls back to the operators' chat."
    )
    event: OrderEvent | None = Field(default=None, validate_default=True, description="order_card only.")
    order: OrderView | None = Field(default=None, validate_default=True, description="order_card only.")
    note: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="A comment, or the escalation's reason."
    )
    alert: AlertView | None = Field(default=None, validate_default=True, description="alert only.")
    reassignment: ReassignmentView | None = Field(
        default=None, description="order.reassigned only: the two operators to tell."
    )
    assignment: AssignmentView | None = Field(
        default=None, description="order.assigned and order.assignment_lapsed only: the operator to tell."
    )

    @field_validator("event", "order", "alert")
    @classmethod
    def _belongs_to_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        wanted = "alert" if info.field_name == "alert" else "order_card"
        if kind == wanted and value is None:
            raise ValueError(f"required when kind is {wanted}")
        if kind is not None and kind != wanted and value is not None:
            raise ValueError(f"only for kind {wanted}")
        return value


class MessageDeliveryRead(BaseModel):
    message_id: str
    outcome: Outcome = Field(
        description="posted: a new message; edited: the order's cards show it; no_card: no card of the "
        "order is known to edit; duplicate: this message_id was handled before (nothing sent again)."
    )
    telegram_message_ids: list[int] = Field(description="The Telegram messages posted or showing the order.")
