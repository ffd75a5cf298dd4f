"""Events order-api receives from wallet-pool (through ``POST /v1/events``, deduplicated by the inbox)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import WalletAssigned
from order_api.clients.wallet_pool import Allocation, checked_allocation
from order_api.orders.intake_persistence import announce_order, apply_allocation
from order_api.orders.service import load_order
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.errors import PeerAnswerInvalidError, ValidationFailedError
from servicekit.events import EventHandler, read_payload
from servicekit.outbox import EventEnvelope


def wallet_event_handlers(*, settings: Settings, protection: DataProtection) -> dict[str, EventHandler]:
    async def wallet_assigned(session: AsyncSession, envelope: EventEnvelope) -> None:
        """A queued order got an address released by another order: it now awaits the deposit. The payload
        is read through its model, the address checked as an allocation answer is (``checked_allocation``),
        and one another open order holds is refused too: such an event is ``422``, and nothing of it is
        stored."""
        assigned = read_payload(WalletAssigned, envelope)
        order = await load_order(session, order_id=assigned.order_id, for_update=True)
        try:
            allocation = checked_allocation(
                Allocation(
                    order_id=order.id,
                    status="allocated",
                    currency=assigned.currency,
                    network=assigned.network,
                    address=assigned.address,
                ),
                order_id=order.id,
                currency=order.from_currency,
                network=order.from_network,
            )
            # An order still unannounced (its intake died, or is still waiting) is announced with the address.
            await apply_allocation(
                session, order=order, allocation=allocation, settings=settings, protection=protection
            )
        except PeerAnswerInvalidError as exc:
            raise ValidationFailedError.for_field("payload.address", exc.detail) from exc
        await announce_order(session, protection=protection, order=order)

    return {WalletAssigned.event_type: wallet_assigned}
