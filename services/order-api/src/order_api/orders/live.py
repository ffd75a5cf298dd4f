"""What the order streams of every replica are told when an order changes (``GET /v1/orders/{id}/events``).

``record_order_action`` (``orders.lifecycle``), which every change of an order goes through, sends one
signal per change in the change's own transaction: the order's id and, when the order entered or left its
pool's wait queue, the pool, whose other queued orders then have a new place. A signal carries no state:
each stream reads the order again (``orders.stream``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.orders.models import Order, OrderStatus
from servicekit.signals import send_signal

CHANNEL = "order_api_order_changed"


@dataclass(frozen=True, slots=True)
class OrderChange:
    order_id: str
    queue: str | None
    """The pool (``currency/network``) whose wait queue moved with this change, if it did."""

    def payload(self) -> str:
        return json.dumps({"order_id": self.order_id, "queue": self.queue}, separators=(",", ":"))

    @classmethod
    def read(cls, payload: str) -> OrderChange:
        fields = json.loads(payload)
        return cls(order_id=str(fields["order_id"]), queue=fields.get("queue"))


def queue_of(currency: str, network: str) -> str:
    """The name a pool's wait queue goes by in signals."""
    return f"{currency}/{network}"


async def signal_order_change(session: AsyncSession, *, order: Order, from_status: str | None) -> None:
    """Tell every replica's streams, once this transaction commits, that ``order`` changed."""
    queued = OrderStatus.QUEUED.value
    moved = from_status != order.status and queued in (from_status, order.status)
    change = OrderChange(
        order_id=order.id, queue=queue_of(order.from_currency, order.from_network) if moved else None
    )
    await send_signal(session, channel=CHANNEL, payload=change.payload())
