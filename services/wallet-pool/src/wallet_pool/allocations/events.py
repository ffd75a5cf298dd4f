"""Events wallet-pool receives from order-api (``POST /v1/events``, deduplicated by the inbox).

order-api closes an order (completed, cancelled, expired) and, in the same transaction, writes an
``order.closed`` command to its outbox; its relay delivers it here until it succeeds. Handling it is the same
release as ``POST /v1/allocations/{order_id}/release``, in the transaction that records the event id.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import OrderClosed
from servicekit.events import EventHandler, read_payload
from servicekit.outbox import EventEnvelope
from wallet_pool.allocations.service import release_allocation
from wallet_pool.metrics import PoolMetrics
from wallet_pool.settings import Settings

ORDER_CLOSED = OrderClosed.event_type


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
