"""Events order-api receives from wallet-pool (through ``POST /v1/events``, deduplicated by the inbox)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.clients.wallet_pool import Allocation
from order_api.orders.service import apply_allocation, load_order
from order_api.settings import Settings
from servicekit.events import EventHandler
from servicekit.outbox import EventEnvelope


def wallet_event_handlers(settings: Settings) -> dict[str, EventHandler]:
    async def wallet_assigned(session: AsyncSession, envelope: EventEnvelope) -> None:
        """A queued order got an address released by another order: it now awaits the deposit."""
        payload = envelope.payload
        order = await load_order(session, order_id=str(payload["order_id"]), for_update=True)
        allocation = Allocation(
            order_id=order.id,
            status="allocated",
            currency=str(payload["currency"]),
            network=str(payload["network"]),
            address=str(payload["address"]),
        )
        await apply_allocation(session, order=order, allocation=allocation, settings=settings)

    return {"wallet.assigned": wallet_assigned}
