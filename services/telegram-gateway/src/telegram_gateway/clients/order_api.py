"""order-api, called for the linked operator: the gateway's key (scope ``orders:act-as-operator``) plus
``X-Operator-Telegram-Id`` naming the operator's Telegram user. With that key alone, the gateway redeems link
codes and asks who a Telegram user is (order-api's operator record is the one truth about the link).

The errors order-api answers the bot with are not declared here again: the service client rebuilds every code of
``desk_contracts.errors.ErrorCode`` as a ``DomainError`` carrying that code, order-api's status and title and the
other fields of the problem document (``held_by`` …). Callers dispatch on ``ErrorCode`` members, never on strings.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from desk_contracts.errors import ErrorCode
from servicekit.client import ServiceClient, deadline, remaining_seconds
from servicekit.errors import (
    DomainError,
    PeerUnavailableError,
)
from telegram_gateway.cards.schemas import OrderView

OPERATOR_HEADER = "X-Operator-Telegram-Id"
RoleName = Literal["operator", "support", "admin"]
EscalationReason = Literal["underpaid", "overpaid", "other"]
T = TypeVar("T")
DEFAULT_BUDGET_SECONDS = 3.0
BUDGET_SPENT_SECONDS = 0.01
"""A call that failed with less than this left of its budget failed for want of time."""


CARD_FIELDS = frozenset(OrderView.model_fields) - {"order_id"}
"""What a card shows of an order besides its id (order-api calls the id ``id``)."""


class OrderApiSlowError(PeerUnavailableError):
    """order-api gave no answer within the call's budget (the call and its retries were abandoned)."""

    code = ErrorCode.ORDER_API_SLOW
    title = "order-api did not answer in time"


def held_by_name(error: DomainError) -> str | None:
    """Who holds the order, from an ``order_already_taken`` or ``order_not_held`` problem."""
    held_by = error.extra.get("held_by")
    if isinstance(held_by, dict) and held_by.get("name"):
        return str(held_by["name"])
    return None


class LinkedOperator(BaseModel):
    """The active operator linked to a Telegram user, as order-api says."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    operator_id: str
    name: str
    role: RoleName
    telegram_user_id: int


class OperatorOrder(BaseModel):
    """An order as order-api shows it to staff (the fields a card needs)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    status: str
    from_currency: str
    from_network: str
    to_currency: str
    to_network: str
    amount: str
    priority: str
    deposit_address: str | None
    queue_position: int | None
    expires_at: datetime | None
    operator_id: str | None
    operator_name: str | None
    escalated: bool
    version: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    transaction: dict[str, Any] | None = None

    def recorded_deposit_amount(self) -> str | None:
        """The amount of the deposit recorded on the order (by a hold for support), if any."""
        deposit = (self.transaction or {}).get("deposit")
        return str(deposit["amount"]) if isinstance(deposit, dict) and deposit.get("amount") else None

    def view(self) -> OrderView:
        return OrderView.model_validate(
            {
                "order_id": self.id,
                **self.model_dump(include=set(CARD_FIELDS)),
            }
        )


class Presence(BaseModel):
    """An operator's presence and load, as order-api says."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["available", "away"]
    since: datetime | None
    held_orders: int
    max_held_orders: int


class OrderApiClient:
    """order-api's operator routes. Every call, its retries included, runs within ``budget_seconds`` (a
    servicekit ``deadline``): the bot answers a press inside Telegram's window, with
    :class:`OrderApiSlowError` when the budget ran out.
    What order-api did meanwhile is whole or nothing (one transaction), and a repeated press is safe: a
    take is idempotent, the other actions carry the card's version (``If-Match``)."""

    def __init__(self, client: ServiceClient, *, budget_seconds: float = DEFAULT_BUDGET_SECONDS) -> None:
        self.client = client
        self.budget_seconds = budget_seconds

    async def _within_budget(self, call: Awaitable[T]) -> T:
        """``call`` under the servicekit deadline of ``budget_seconds``; out of time, it is
        :class:`OrderApiSlowError` (any other outage stays ``PeerUnavailableError``)."""
        with deadline(self.budget_seconds):
            try:
                return await call
            except PeerUnavailableError as error:
                left = remaining_seconds()
                if left is None or left > BUDGET_SPENT_SECONDS:
                    raise
                slow = OrderApiSlowError(
                    f"order-api did not answer within {self.budget_seconds:g} s.", extra={"peer": "order-api"}
                )
                slow.peer = "order-api"
                raise slow from error

    async def _request(self, method: str, path: str, **options: Any) -> Any:
        """``ServiceClient.request`` within the budget; the answer's JSON."""
        response = await self._within_budget(self.client.request(method, path, **options))
        return response.json()

    async def _post(self, path: str, body: Any = None, **options: Any) -> Any:
        return await self._within_budget(self.client.post_json(path, body, **options))

    @staticmethod
    def _as(telegram_user_id: int, version: int | None = None) -> dict[str, str]:
        headers = {OPERATOR_HEADER: str(telegram_user_id)}
        if version is not None:
            headers["If-Match"] = str(version)
        return headers

    async def redeem_link_code(
        self, *, code: str, telegram_user_id: int, telegram_username: str | None
    ) -> LinkedOperator:
        body: dict[str, Any] = {"code": code, "telegram_user_id": telegram_user_id}
        if telegram_username:
            body["telegram_username"] = telegram_username
        return LinkedOperator.model_validate(await self._post("/v1/telegram/links", body))

    async def linked_operator(self, *, telegram_user_id: int) -> LinkedOperator | None:
        """Who the Telegram user is (``None``: nobody, or a deactivated operator). Safe to retry."""
        try:
            answer = await self._request("GET", f"/v1/telegram/operators/{telegram_user_id}")
        except DomainError as error:
            if error.code == ErrorCode.TELEGRAM_LINK_NOT_FOUND:
                return None
            raise
        return LinkedOperator.model_validate(answer)

    async def take(self, *, order_id: str, telegram_user_id: int) -> OperatorOrder:
        """Idempotent for the operator (taking an order one holds changes nothing), so it is retried."""
        answer = await self._post(
            f"/v1/operator/orders/{order_id}/take", headers=self._as(telegram_user_id), idempotent=True
        )
        return OperatorOrder.model_validate(answer)

    async def accept(self, *, order_id: str, telegram_user_id: int) -> OperatorOrder:
        """Accept an order auto-assigned to the operator; idempotent (accepting again changes nothing), so it
        is retried."""
        answer = await self._post(
            f"/v1/operator/orders/{order_id}/accept", headers=self._as(telegram_user_id), idempotent=True
        )
        return OperatorOrder.model_validate(answer)

    async def change_status(
        self,
        *,
        order_id: str,
        telegram_user_id: int,
        status: Literal["completed", "cancelled"],
        version: int | None,
        comment: str | None = None,
        transaction: dict[str, Any] | None = None,
    ) -> OperatorOrder:
        """``transaction``: the record of what moved (contract: order-api's ``OrderStatusUpdate``), given
        with a completion only."""
        body: dict[str, Any] = {"status": status}
        if comment:
            body["comment"] = comment
        if transaction is not None:
            body["transaction"] = transaction
        answer = await self._post(
            f"/v1/operator/orders/{order_id}/status", body, headers=self._as(telegram_user_id, version)
        )
        return OperatorOrder.model_validate(answer)

    async def release(self, *, order_id: str, telegram_user_id: int, version: int | None) -> OperatorOrder:
        answer = await self._post(
            f"/v1/operator/orders/{order_id}/release", {}, headers=self._as(telegram_user_id, version)
        )
        return OperatorOrder.model_validate(answer)

    async def escalate(
        self,
        *,
        order_id: str,
        telegram_user_id: int,
        comment: str,
        reason: EscalationReason | None = None,
        deposit: dict[str, Any] | None = None,
    ) -> None:
        """Hand the order to support; ``reason`` and the ``deposit`` seen when it is a payment mismatch the
        operator cannot settle (the order stays held, the deposit is recorded on it)."""
        body: dict[str, Any] = {"comment": comment}
        if reason is not None:
            body["reason"] = reason
        if deposit is not None:
            body["deposit"] = deposit
        await self._post(f"/v1/operator/orders/{order_id}/escalate", body, headers=self._as(telegram_user_id))

    async def get_order(self, *, order_id: str, telegram_user_id: int) -> OperatorOrder:
        answer = await self._request(
            "GET", f"/v1/operator/orders/{order_id}", headers=self._as(telegram_user_id)
        )
        return OperatorOrder.model_validate(answer)

    async def my_orders(self, *, telegram_user_id: int, limit: int = 20) -> list[OperatorOrder]:
        answer = await self._request(
            "GET", "/v1/operator/orders/mine", params={"limit": limit}, headers=self._as(telegram_user_id)
        )
        return [OperatorOrder.model_validate(item) for item in answer["items"]]

    async def set_presence(self, *, telegram_user_id: int, status: Literal["available", "away"]) -> Presence:
        """Setting the same status twice changes nothing, so it is retried."""
        answer = await self._request(
            "PUT",
            "/v1/operator/presence",
            json={"status": status},
            headers=self._as(telegram_user_id),
        )
        return Presence.model_validate(answer)

    async def reassign(
        self,
        *,
        order_id: str,
        telegram_user_id: int,
        operator_name: str,
        version: int | None = None,
        comment: str | None = None,
    ) -> OperatorOrder:
        """Support hands the order to the active operator called ``operator_name``; ``version``: the card's,
        so that an order changed meanwhile (another reassignment) is refused (``412``)."""
        body: dict[str, Any] = {"operator_name": operator_name}
        if comment:
            body["comment"] = comment
        answer = await self._post(
            f"/v1/admin/orders/{order_id}/reassign", body, headers=self._as(telegram_user_id, version)
        )
        return OperatorOrder.model_validate(answer)
