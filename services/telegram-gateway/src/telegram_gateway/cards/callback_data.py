"""What an order card's buttons send back: ``o:<action>:<order id>:<version>``, at most 51 bytes (Telegram
allows 64). The version is the one the card showed: a button pressed on an outdated card is refused by
order-api (``If-Match``) instead of acting on a state the operator did not see."""

from __future__ import annotations

import enum

from aiogram.filters.callback_data import CallbackData


class OrderAction(enum.StrEnum):
    TAKE = "t"
    COMPLETE = "c"
    CANCEL = "x"
    RELEASE = "r"
    ESCALATE = "e"
    REASSIGN = "a"  # support, on an escalated order's card
    ACCEPT = "k"  # the operator, on the private message of an order auto-assigned to them


class OrderCallback(CallbackData, prefix="o"):
    action: OrderAction
    order_id: str
    version: int | None = None


class CompletionChoice(enum.StrEnum):
    SKIP = "s"  # complete without the transaction record (where the desk allows it)
    CANCEL = "x"  # drop the completion; the order is unchanged
    ADJUSTED = "a"  # a payment mismatch: complete with the payout adjusted to what arrived
    HOLD = "h"  # a payment mismatch: hold the order for support


class CompletionCallback(CallbackData, prefix="d"):
    """A choice during an operator's completion of an order: ``d:<choice>:<order id>`` (at most 40 bytes).
    It acts only on the presser's own draft of that order."""

    choice: CompletionChoice
    order_id: str
