"""``/v1/admin/customers``: admins erase a customer. Audited."""

from __future__ import annotations

from fastapi import APIRouter

from order_api.customers import erasure
from order_api.customers.schemas import CustomerErasureRead
from order_api.operators.dependencies import AdminStaff
from servicekit.app import DbSession
from servicekit.errors import problem_responses

router = APIRouter(prefix="/v1/admin/customers", tags=["admin"])


@router.post(
    "/{customer_id}/erase",
    operation_id="eraseCustomer",
    summary="Erase a customer",
    description="Irreversibly removes what identifies the customer: their email (sealed value and blind "
    "index: the email no longer finds them, and a later order with it makes a new customer), the payout "
    "addresses and client addresses of their orders, their sessions (their tokens answer `401` from now on), "
    "their one-time codes and stored `Idempotency-Key` answers, and the personal fields of events about "
    "them not yet delivered. Their orders stay, with amounts and statuses (financial records). The audit "
    "trail records `customer.erased` (who, when, which customer; nothing personal) and the notifier is told "
    "(`customer.erased`) to forget what it holds. Idempotent: erasing again answers `200` with the first "
    "erasure's time and changes nothing. `409 customer_has_open_orders` (listing them in `open_orders`) "
    "while an order is open: finish or cancel it first. Admins only (the admin API key or an admin's "
    "personal token); `403` for anyone else, and for an admin acted for by the Telegram gateway.",
    response_model=CustomerErasureRead,
    responses=problem_responses(401, 403, 404, 409),
)
async def erase_customer(customer_id: str, session: DbSession, admin: AdminStaff) -> CustomerErasureRead:
    return await erasure.erase_customer(session=session, actor=admin.actor, customer_id=customer_id)
