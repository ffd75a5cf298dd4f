"""Request and response bodies of ``/v1/admin/operators``, ``/v1/operator`` and ``/v1/telegram/links``."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from order_api.orders.models import OrderStatus
from order_api.orders.schemas import (
    BTC_TX_EXAMPLE,
    TRON_TX_EXAMPLE,
    CurrencyCode,
    DepositCreate,
    OrderRead,
    TransactionCreate,
)
from servicekit.bounds import DecimalString
from servicekit.pagination import Page, PageQuery

RoleName = Literal["operator", "support", "admin"]
PresenceName = Literal["available", "away"]
MaxHeldOrders = Annotated[int, Field(ge=1, le=1000)]
OperatorName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
TelegramUserId = Annotated[int, Field(gt=0, lt=2**63, description="The operator's Telegram user id.")]
TelegramUsername = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^@?[A-Za-z0-9_]{1,64}$"),
    AfterValidator(lambda name: name.removeprefix("@")),
]
MAX_AMOUNT = Decimal("1e20")  # what an amount column holds
Comment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


class OperatorCreate(BaseModel):
    """A new member of staff."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Anna", "role": "operator", "telegram_user_id": 123456789}]},
    )

    name: OperatorName
    role: RoleName = Field(
        default="operator",
        description="`operator` takes and drives orders; `support` answers escalations; `admin` does all "
        "of it and manages operators.",
    )
    telegram_user_id: TelegramUserId | None = Field(
        default=None,
        description="Link a Telegram account (the same as the operator sending `/start <code>`): the bot then "
        "acts for this operator, in their work on orders only.",
    )


class OperatorUpdate(BaseModel):
    """Fields to change; an explicit `telegram_user_id: null` unlinks Telegram."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_held_orders": 8}, {"active": False}]},
    )

    name: OperatorName | None = None
    role: RoleName | None = None
    telegram_user_id: TelegramUserId | None = None
    active: bool | None = Field(
        default=None,
        description="An inactive operator can do nothing; deactivating returns the orders they hold to the "
        "pool at once (`order.released`, the admin as actor).",
    )
    max_held_orders: MaxHeldOrders | None = Field(
        default=None,
        description="Their cap on orders held at once; an explicit `null` returns them to the desk's default "
        "(`ORDER_API_OPERATOR_MAX_HELD_ORDERS`).",
    )


class OperatorRead(BaseModel):
    id: str
    name: str
    role: RoleName
    telegram_user_id: int | None
    active: bool
    token_active: bool = Field(description="A personal token is issued and neither revoked nor expired.")
    token_expires_at: datetime | None
    max_held_orders: int | None = Field(
        description="Their own cap on orders held at once; null: the desk's default."
    )
    presence: PresenceName = Field(description="`available` at the desk, or `away`.")
    presence_since: datetime | None = Field(description="Since when; null: never changed.")
    created_at: datetime
    updated_at: datetime


class OperatorPage(Page[OperatorRead]):
    """Staff accounts, oldest first."""


class OperatorCreated(OperatorRead):
    token: str = Field(
        description="The personal token (`op_…`), shown only here: send it as `Authorization: Bearer …`."
    )


class OperatorTokenRead(BaseModel):
    """A new personal token, shown only here; the previous one stopped working."""

    operator_id: str
    token: str
    expires_at: datetime | None


class TelegramLinkCodeRead(BaseModel):
    """A one-time link code, shown only here: the operator sends `/start <code>` to the bot."""

    code: str = Field(
        examples=["K7M3QX9PTA"],
        description="10 characters without look-alikes (no 0/O, 1/I/L); case, spaces and dashes do not matter.",
    )
    expires_at: datetime = Field(description="The code is refused after this; issue a new one then.")


class TelegramLinkCreate(BaseModel):
    """The Telegram gateway redeems a link code for the Telegram user who sent it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"code": "K7M3QX9PTA", "telegram_user_id": 123456789, "telegram_username": "anna"}]
        },
    )

    code: str = Field(min_length=1, max_length=64, description="The code the operator typed.")
    telegram_user_id: TelegramUserId
    telegram_username: TelegramUsername | None = Field(
        default=None, description="For the audit trail only (usernames change; the id is what links)."
    )


class TelegramLinkRead(BaseModel):
    """The active operator linked to a Telegram user (order-api's operator record is the one truth)."""

    operator_id: str
    name: str
    role: RoleName
    telegram_user_id: int


class PresenceUpdate(BaseModel):
    """Mark yourself at the desk (`available`) or `away`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "away"}]})

    status: PresenceName = Field(
        description="`away` keeps the orders you hold (you still drive them) but says you take no new work."
    )


class PresenceRead(BaseModel):
    """An operator's presence and load."""

    operator_id: str
    name: str
    status: PresenceName
    since: datetime | None = Field(description="When the status last changed; null: never changed.")
    held_orders: int = Field(description="Orders they hold in progress now.")
    max_held_orders: int = Field(description="Their cap (their own, or the desk's default).")


class OrderReassign(BaseModel):
    """Hand a held order to another operator."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "operator_id": "7d1f0c2a-3b4e-4f5a-8b9c-0d1e2f3a4b5c",
                    "comment": "Anna is off sick; Boris takes over.",
                }
            ]
        },
    )

    operator_id: str | None = Field(
        default=None, min_length=1, max_length=36, description="The active operator to hold it now."
    )
    operator_name: OperatorName | None = Field(
        default=None,
        description="Instead of `operator_id`: the active operator of this name (any case), as support types "
        "it in the bot; a name two operators share is `422`.",
    )
    comment: Comment | None = None
    override_cap: bool = Field(
        default=False,
        description="Admins only: hand it over even if the operator already holds as many orders as their "
        "cap allows (otherwise `409 operator_at_capacity`).",
    )

    @model_validator(mode="after")
    def _one_operator(self) -> OrderReassign:
        if (self.operator_id is None) == (self.operator_name is None):
            raise ValueError("name the operator with exactly one of operator_id and operator_name")
        return self


class OperatorOrderFilter(PageQuery):
    """Which orders to list (query parameters). Pages run oldest first, so the longest-waiting order
    comes first and a cursor stays correct while orders change."""

    model_config = ConfigDict(extra="forbid")

    status: OrderStatus | None = Field(
        default=None,
        description="Default: `awaiting_deposit` (takeable) for the list, `in_progress` for my orders.",
    )
    currency: CurrencyCode | None = Field(default=None, description="What the customer sends.")
    amount_min: DecimalString | None = Field(
        default=None, ge=0, lt=MAX_AMOUNT, description="Inclusive, e.g. `0.01`."
    )
    amount_max: DecimalString | None = Field(default=None, ge=0, lt=MAX_AMOUNT, description="Inclusive.")
    created_from: AwareDatetime | None = Field(default=None, description="Inclusive, with a time zone.")
    created_to: AwareDatetime | None = Field(default=None, description="Exclusive, with a time zone.")


class OperatorOrderRead(OrderRead):
    """An order as staff see it: with its holder and whether support is pulled in."""

    operator_id: str | None = Field(description="Who holds the order (or held it when it closed).")
    operator_name: str | None
    escalated: bool = Field(description="An escalation is open.")


class OperatorOrderPage(Page[OperatorOrderRead]):
    """Orders as staff see them, oldest first."""


class AddressHistoryEntry(BaseModel):
    """An earlier order that had the same deposit address (a late deposit may belong to it)."""

    order_id: str
    status: str
    amount: DecimalString
    from_currency: str
    created_at: datetime
    address_assigned_at: datetime | None
    closed_at: datetime | None


class EscalationCommentRead(BaseModel):
    id: int
    author_name: str
    author_role: str
    channel: str
    body: str
    created_at: datetime


class EscalationRead(BaseModel):
    id: str
    order_id: str
    status: Literal["open", "resolved"]
    raised_by: str
    raised_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    comments: list[EscalationCommentRead] = Field(description="The thread, oldest first.")


class EscalationPage(Page[EscalationRead]):
    """Escalations, oldest first."""


class AssignmentRead(BaseModel):
    """The order's latest auto-assignment (`ORDER_API_AUTO_ASSIGN`)."""

    model_config = ConfigDict(from_attributes=True)

    operator_id: str = Field(description="Whom it was auto-assigned to.")
    assigned_at: datetime
    lapses_at: datetime = Field(
        description="When it returns to the pool unless the operator accepts it or acts on it."
    )
    outcome: Literal["pending", "accepted", "lapsed", "ended"] = Field(
        description="pending: not yet accepted; accepted: accepted or acted on in time; lapsed: returned to "
        "the pool at `lapses_at`; ended: the order left the operator otherwise (reassigned, closed)."
    )
    settled_at: datetime | None = Field(description="When the outcome was settled; null while pending.")

    @field_validator("outcome", mode="before")
    @classmethod
    def _pending_when_unsettled(cls, value: str | None) -> str:
        return value or "pending"


class OperatorOrderDetail(OperatorOrderRead):
    address_history: list[AddressHistoryEntry] = Field(
        description="Up to 10 other orders that had this deposit address, newest first."
    )
    escalation: EscalationRead | None = Field(description="The open escalation, if any.")
    assignment: AssignmentRead | None = Field(
        default=None, description="Its latest auto-assignment, if it was ever auto-assigned."
    )


class OrderStatusUpdate(BaseModel):
    """Drive a held order: complete it (with its transaction record), cancel it, or give it back
    (`awaiting_deposit`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "status": "completed",
                    "comment": "Paid out.",
                    "transaction": {
                        "deposit": {
                            "tx_hash": BTC_TX_EXAMPLE,
                            "amount": "0.05",
                            "seen_at": "2026-12-06T10:00:00Z",
                        },
                        "payout": {"tx_hash": TRON_TX_EXAMPLE, "amount": "1520.4", "network_fee": "1.2"},
                    },
                },
                {"status": "cancelled", "comment": "The customer asked to cancel."},
            ]
        },
    )

    status: Literal["completed", "cancelled", "awaiting_deposit"]
    comment: Comment | None = None
    transaction: TransactionCreate | None = Field(
        default=None,
        description="With `completed` only: what moved. Required unless the desk allows completing without "
        "(`ORDER_API_COMPLETION_TRANSACTION_REQUIRED`).",
    )


class OrderReleaseCreate(BaseModel):
    """Give a held order back to the takeable pool."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "Handing over at the end of my shift."}]}
    )

    comment: Comment | None = None


class EscalationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "comment": "The deposit arrived short by 0.001 BTC.",
                    "reason": "underpaid",
                    "deposit": {
                        "tx_hash": BTC_TX_EXAMPLE,
                        "amount": "0.049",
                        "seen_at": "2026-12-06T10:00:00Z",
                    },
                },
                {"comment": "The customer writes that the payout address is wrong."},
            ]
        },
    )

    comment: Comment = Field(description="What support should look at.")
    reason: Literal["underpaid", "overpaid", "other"] = Field(
        default="other",
        description="Why: a payment short of or above the ordered amount that the operator cannot settle, or "
        "`other`.",
    )
    deposit: DepositCreate | None = Field(
        default=None,
        description="The deposit as seen, recorded on the order (validated as on completion); a later "
        "completion may then leave it out.",
    )


class EscalationCommentCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"comment": "Asked the customer for the transaction id."}]},
    )

    comment: Comment


class EscalationResolutionCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "The customer topped up; completed."}]}
    )

    comment: Comment = Field(description="How it was resolved.")


class WorkloadRead(BaseModel):
    processed: int = Field(description="Orders completed or cancelled while held, in the period.")
    completed: int
    cancelled: int
    average_handling_seconds: float | None = Field(description="From taking to closing; null without data.")
    open_orders: int = Field(description="Orders in progress now.")


class TeamWorkloadRead(WorkloadRead):
    """The whole team, anonymised: no names or ids."""

    operators: int = Field(description="Operators who processed or hold orders.")
    processed_per_operator: list[int] = Field(description="Each operator's processed count, largest first.")
    my_rank: int | None = Field(description="My place in that list (1 = most processed); null if absent.")


class OperatorStatsRead(BaseModel):
    since: datetime = Field(description="Start of the period counted.")
    mine: WorkloadRead
    team: TeamWorkloadRead
