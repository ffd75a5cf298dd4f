"""Order intake, reading and cancelling, as the business says it.

Creating an order takes two short transactions around one call to wallet-pool: the order is committed
first (so it exists whatever wallet-pool does), then wallet-pool is asked for an address, within the intake
budget (``intake_budget_seconds``, every attempt included), then the answer is applied and the order
announced (``order.created``). Without an answer in time the order stays ``awaiting_address`` (allocation
pending) and the reconciler (``workers``) asks again until wallet-pool answers: the order is never lost. An
answer that cannot be used (see ``clients.wallet_pool``: malformed, about another order, an address that is
not the order's, or an address another open order holds) counts as no answer: nothing of it is stored, the
customer gets the order without an address (``201``), and the reconciler asks again later.

Every order is announced exactly once in effect: whoever sets ``announced_at`` (intake, the reconciler, the
sweeper that announces orders a crash left silent, the recovery of an ``Idempotency-Key``) writes
``order.created`` in the same transaction, and only where ``announced_at`` was still empty.

What intake decides is in ``orders.intake`` (pure functions); how it is stored, on the fast path or the
general one, in ``orders.intake_persistence``. ``create_order`` below runs the one through the other.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.service import CustomerPrincipal
from order_api.clients.wallet_pool import Allocation, WalletPoolClient
from order_api.orders import intake_persistence as persistence
from order_api.orders.errors import FullSessionRequiredError, OrderNotFoundError, OrderTransitionError
from order_api.orders.intake import (
    IdempotencyClaim,
    OrderResponse,
    created_response,
    new_order,
    open_order_caps,
    read_fields,
    request_fingerprint,
    validate_order,
)
from order_api.orders.intake_persistence import PAYOUT_CONTEXT, log_unusable_answer, open_payout_address
from order_api.orders.lifecycle import Actor, change_status
from order_api.orders.metrics import OrderMetrics
from order_api.orders.models import AllocationState, Order, OrderStatus
from order_api.orders.repository import customer_orders_page, find_order
from order_api.orders.schemas import OrderCreate, OrderPage, OrderRead
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.client import deadline
from servicekit.db import driver, utcnow
from servicekit.errors import DomainError
from servicekit.ratelimit import RateLimiter

LIVE_POSITION_BUDGET_SECONDS = 1.0
"""How long reading an order waits for wallet-pool's live queue place (attempts included) before answering
with the last known one."""


def read_order(order: Order, *, protection: DataProtection) -> OrderRead:
    return OrderRead(**read_fields(order, payout_address=open_payout_address(order, protection=protection)))


async def create_order(
    *,
    session: AsyncSession,
    settings: Settings,
    protection: DataProtection,
    rate_limiter: RateLimiter,
    wallet_pool: WalletPoolClient,
    request: OrderCreate,
    principal: CustomerPrincipal | None,
    client_ip: str,
    idempotency_key: str | None,
) -> OrderResponse:
    """Accept a customer's order and find it a deposit address (or a place in the queue)."""
    valid = validate_order(request, currencies=settings.currencies)
    # Fails open: a customer is not refused because Redis is down (README, Security).
    await rate_limiter.hit(
        name="orders:create", identifier=client_ip, limit=settings.order_rate_limit, fail_open=True
    )
    email_index = protection.email_index(request.email)
    claim = (
        None
        if idempotency_key is None
        else IdempotencyClaim(email_index, idempotency_key, request_fingerprint(request))
    )
    full_session = principal if principal is not None and principal.kind == "full" else None
    caps = open_order_caps(
        per_customer=settings.max_open_orders_per_customer,
        per_network=settings.max_open_orders_per_ip,
        mailbox_proven=full_session is not None,
    )
    order = new_order(
        order_id=str(uuid.uuid4()),
        request=request,
        valid=valid,
        payout_address_sealed=protection.seal(valid.payout_address, context=PAYOUT_CONTEXT),
        client_ip=client_ip,
        mailbox_proven=caps.mailbox_proven,
        now=utcnow(),
        rules=settings.currencies[request.from_currency],
    )

    # The common case, a first order of a new customer, on PostgreSQL: the fast path. It writes nothing
    # for an email that is already a customer's; the general path then takes the order.
    sql = driver(session) if full_session is None else None
    if sql is not None:
        issued = await persistence.create_for_new_customer(
            sql,
            order=order,
            caps=caps,
            settings=settings,
            protection=protection,
            email=request.email,
            email_index=email_index,
            idempotency=claim,
        )
        if issued is not None:
            allocation = await _ask_for_address(wallet_pool, order=order, settings=settings)
            return await persistence.settle_new_order(
                session,
                sql=sql,
                order=order,
                allocation=allocation,
                settings=settings,
                protection=protection,
                issued=issued,
                email=request.email.strip(),
                payout_address=valid.payout_address,
                idempotency=claim,
            )

    if claim is not None:
        replay = await persistence.claim_idempotency_key(
            session,
            claim=claim,
            order_id=order.id,
            settings=settings,
            protection=protection,
            full_session=full_session,
        )
        if replay is not None:
            return replay
    issued = await persistence.create_for_customer(
        session,
        order=order,
        caps=caps,
        settings=settings,
        protection=protection,
        email=request.email,
        full_session=full_session,
    )
    await persistence.commit_before_asking_wallet_pool(session)
    allocation = await _ask_for_address(wallet_pool, order=order, settings=settings)
    order = await persistence.settle_order(
        session, order_id=order.id, allocation=allocation, settings=settings, protection=protection
    )
    response = created_response(
        order, payout_address=valid.payout_address, session_token=issued.token if issued else None
    )
    if claim is not None:
        await persistence.store_idempotent_response(
            session, claim=claim, response=response, protection=protection
        )
    return response


async def _ask_for_address(
    wallet_pool: WalletPoolClient, *, order: Order, settings: Settings
) -> Allocation | None:
    """wallet-pool's checked answer for a committed order, within the intake budget; ``None`` when none can
    be had in time (the reconciler asks again; the order is accepted as ``awaiting_address``). Whatever
    wallet-pool answered instead, an outage, silence, a refusal, a problem of any code (a forged
    ``rate_limited`` too) or an answer that cannot be used, stays here: it is logged, never passed on to the
    customer."""
    try:
        with deadline(settings.intake_budget_seconds):
            return await wallet_pool.allocate(
                order_id=order.id,
                currency=order.from_currency,
                network=order.from_network,
                priority=order.priority,
            )
    except DomainError as error:
        log_unusable_answer(error, order_id=order.id)
        return None


async def load_order(session: AsyncSession, *, order_id: str, for_update: bool = False) -> Order:
    order = await find_order(session, order_id=order_id, for_update=for_update)
    if order is None:
        raise OrderNotFoundError(f"No order {order_id}.")
    return order


async def customer_order(
    session: AsyncSession, *, principal: CustomerPrincipal, order_id: str, for_update: bool = False
) -> Order:
    """The order if this customer session may see it; another customer's order is 'not found', not 403."""
    try:
        uuid.UUID(order_id)
    except ValueError:
        raise OrderNotFoundError(f"No order {order_id}.") from None
    order = await load_order(session, order_id=order_id, for_update=for_update)
    if order.customer_id != principal.customer_id or not principal.may_access(order.id):
        raise OrderNotFoundError(f"No order {order_id}.")
    return order


async def get_order(
    *,
    session: AsyncSession,
    protection: DataProtection,
    wallet_pool: WalletPoolClient,
    principal: CustomerPrincipal,
    order_id: str,
) -> OrderRead:
    """The customer's order; while it is queued, its live place in the queue."""
    order = await customer_order(session, principal=principal, order_id=order_id)
    read = read_order(order, protection=protection)
    if order.status == OrderStatus.QUEUED and order.allocation_state == AllocationState.QUEUED:
        try:
            with deadline(LIVE_POSITION_BUDGET_SECONDS):
                live = await wallet_pool.allocation(
                    order_id=order.id, currency=order.from_currency, network=order.from_network
                )
        except DomainError as error:
            # wallet-pool unreachable, or no usable answer: the last known position is still a fair answer
            log_unusable_answer(error, order_id=order.id)
            return read
        if live.status == "queued":
            read.queue_position = live.position
            read.estimated_wait_seconds = (
                round(live.estimated_wait_seconds) if live.estimated_wait_seconds is not None else None
            )
    return read


async def list_orders(
    *,
    session: AsyncSession,
    protection: DataProtection,
    principal: CustomerPrincipal,
    cursor: str | None,
    limit: int,
    status: OrderStatus | None,
) -> OrderPage:
    """The customer's orders, newest first (a full session is needed to see them all)."""
    if principal.kind != "full":
        raise FullSessionRequiredError("Verify your email (/v1/auth/email-code) to list all your orders.")
    page, next_cursor = await customer_orders_page(
        session, customer_id=principal.customer_id, status=status, cursor=cursor, limit=limit
    )
    return OrderPage(items=[read_order(o, protection=protection) for o in page], next_cursor=next_cursor)


async def cancel_order(
    *,
    session: AsyncSession,
    protection: DataProtection,
    principal: CustomerPrincipal,
    order_id: str,
    expected_version: int | None,
    metrics: OrderMetrics | None = None,
) -> OrderRead:
    """The customer cancels an order not yet taken by an operator; its address goes back to the pool."""
    order = await customer_order(session, principal=principal, order_id=order_id, for_update=True)
    if order.status not in (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED, OrderStatus.AWAITING_DEPOSIT):
        raise OrderTransitionError(
            f"An order that is {order.status} can no longer be cancelled by the customer.",
            extra={"order_status": order.status},
        )
    await change_status(
        session,
        protection=protection,
        order=order,
        to=OrderStatus.CANCELLED,
        actor=Actor(kind="customer", id=principal.customer_id),
        expected_version=expected_version,
    )
    if metrics is not None:
        metrics.order_closed("cancelled_by_customer")
    return read_order(order, protection=protection)
