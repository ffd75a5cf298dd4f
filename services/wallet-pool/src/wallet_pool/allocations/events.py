"""Events wallet-pool receives from order-api (``POST /v1/events``, deduplicated by the inbox).

order-api closes an order (completed, cancelled, expired) and, in the same transaction, writes an
``order.closed`` command to its outbox; its relay delivers it here until it succeeds. Handling it is the same
release as ``POST /v1/allocations/{order_id}/release``, in the transaction that records the event id.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from servicekit.events import EventHandler, read_payload
from servicekit.outbox import EventEnvelope
from wallet_pool.allocations.service import release_allocation
from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings

ORDER_CLOSED = "order.closed"


class OrderClosed(BaseModel):
    """``order.closed``: the order whose address (or place in the queue) to free; the envelope's
    ``aggregate_id`` stands in when the payload does not name it."""

    order_id: str | None = Field(default=None, max_length=64)


def order_event_handlers(
    *, settings: Settings, metrics: PoolMetrics | None = None
) -> dict[str, EventHandler]:
    async def order_closed(session: AsyncSession, envelope: EventEnvelope) -> None:
        """The order reached a terminal status: free its address (or its place in the queue)."""
        order_id = read_payload(OrderClosed, envelope).order_id or envelope.aggregate_id or ""
        if not order_id:
            return
        await release_allocation(session=session, settings=settings, order_id=order_id, metrics=metrics)

    return {ORDER_CLOSED: order_closed}
