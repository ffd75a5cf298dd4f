"""Events order-api receives from wallet-pool (through ``POST /v1/events``, deduplicated by the inbox)."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.clients.wallet_pool import Allocation
from order_api.orders.service import apply_allocation, load_order
from order_api.settings import Settings
from servicekit.events import EventHandler, read_payload
from servicekit.outbox import EventEnvelope


class WalletAssigned(BaseModel):
    """``wallet.assigned``: the address a queued order got (lengths as the order stores them)."""

    order_id: str = Field(min_length=1, max_length=36)
    currency: str = Field(min_length=1, max_length=10)
    network: str = Field(min_length=1, max_length=16)
    address: str = Field(min_length=1, max_length=128)


def wallet_event_handlers(settings: Settings) -> dict[str, EventHandler]:
    async def wallet_assigned(session: AsyncSession, envelope: EventEnvelope) -> None:
        """A queued order got an address released by another order: it now awaits the deposit."""
        assigned = read_payload(WalletAssigned, envelope)
        order = await load_order(session, order_id=assigned.order_id, for_update=True)
        allocation = Allocation(
            order_id=order.id,
            status="allocated",
            currency=assigned.currency,
            network=assigned.network,
            address=assigned.address,
        )
        await apply_allocation(session, order=order, allocation=allocation, settings=settings)

    return {"wallet.assigned": wallet_assigned}
