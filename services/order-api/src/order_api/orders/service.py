"""Order intake, reading and cancelling, as the business says it.

Creating an order takes two short transactions around one call to wallet-pool: the order is committed
first (so it exists whatever wallet-pool does), then wallet-pool is asked for an address, then the answer is
applied. If wallet-pool is down the order stays ``queued`` with its allocation pending and the reconciler
(``workers``) asks again until it answers: the order is never lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import InvalidAddressError, UnsupportedNetworkError, default_network, validate_address
from order_api.auth.service import CustomerPrincipal, open_order_session
from order_api.clients.wallet_pool import Allocation, WalletPoolClient
from order_api.customers.service import lock_or_create_customer
from order_api.db import outbox
from order_api.orders.errors import (
    FullSessionRequiredError,
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    OpenOrderLimitError,
    OrderInputError,
    OrderNotFoundError,
    OrderTransitionError,
)
from order_api.orders.lifecycle import (
    OPEN,
    SYSTEM_WALLET_POOL,
    Actor,
    change_status,
    customer_email_fields,
    order_payload,
    record_event,
    request_release,
)
from order_api.orders.models import AllocationState, IdempotencyKey, Order, OrderStatus, Priority
from order_api.orders.schemas import OrderCreate, OrderCreated, OrderPage, OrderRead
from order_api.protection import DataProtection
from order_api.settings import CurrencyRules, PriorityRules, Settings
from servicekit.db import utcnow
from servicekit.errors import DomainError, PeerRejectedError, PeerUnavailableError
from servicekit.outbox import add_event
from servicekit.ratelimit import RateLimiter

PAYOUT_CONTEXT = "order.payout_address"
IDEMPOTENCY_CONTEXT = "order.idempotent_response"
IN_FLIGHT_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class OrderResponse:
    """What ``POST /v1/orders`` answers (a replay of a stored answer keeps its original status)."""

    status_code: int
    body: dict[str, Any]


def _field_error(field: str, message: str) -> OrderInputError:
    return OrderInputError(
        f"{field}: {message}", errors=[{"field": field, "message": message, "type": "invalid"}]
    )


def _currency_rules(settings: Settings, currency: str, field: str) -> CurrencyRules:
    rules = settings.currencies.get(currency)
    if rules is None:
        raise _field_error(
            field, f"unsupported currency; use one of {', '.join(sorted(settings.currencies))}"
        )
    return rules


def _network(currency: str, network: str | None, field: str) -> str:
    try:
        return network if network is not None else default_network(currency)
    except UnsupportedNetworkError as exc:
        raise _field_error(field, str(exc)) from exc


def validate_order(request: OrderCreate, settings: Settings) -> tuple[str, str, str, Decimal]:
    """Check currencies, networks, amount and payout address; return (from_network, to_network,
    normalised payout address, amount). Every problem names its field."""
    rules = _currency_rules(settings, request.from_currency, "from_currency")
    _currency_rules(settings, request.to_currency, "to_currency")
    if request.from_currency == request.to_currency:
        raise _field_error("to_currency", "must differ from from_currency")
    from_network = _network(request.from_currency, request.from_network, "from_network")
    to_network = _network(request.to_currency, request.to_network, "to_network")
    amount = request.amount
    if not amount.is_finite() or amount <= 0:
        raise _field_error("amount", "must be a positive number")
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > rules.precision:
        raise _field_error("amount", f"at most {rules.precision} decimal places for {request.from_currency}")
    if amount < rules.min_amount or amount > rules.max_amount:
        raise _field_error(
            "amount", f"must be between {rules.min_amount} and {rules.max_amount} {request.from_currency}"
        )
    try:
        payout = validate_address(
            currency=request.to_currency, network=to_network, address=request.payout_address
        )
    except UnsupportedNetworkError as exc:
        raise _field_error("to_network", str(exc)) from exc
    except InvalidAddressError as exc:
        raise _field_error("payout_address", exc.reason) from exc
    return from_network, to_network, payout, amount


def decide_priority(
    *, rules: PriorityRules, currency: str, amount: Decimal, completed_orders: int
) -> Priority:
    """VIP and priority orders jump the wait queue: large amounts, or customers with a history."""
    if (
        amount >= rules.vip_amount.get(currency, Decimal("Infinity"))
        or completed_orders >= rules.vip_completed_orders
    ):
        return Priority.VIP
    if (
        amount >= rules.priority_amount.get(currency, Decimal("Infinity"))
        or completed_orders >= rules.priority_completed_orders
    ):
        return Priority.PRIORITY
    return Priority.NORMAL


def request_fingerprint(request: OrderCreate) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def read_order(order: Order, *, protection: DataProtection) -> OrderRead:
    return OrderRead(
        id=order.id,
        status=order.status,  # type: ignore[arg-type]
        from_currency=order.from_currency,
        from_network=order.from_network,
        to_currency=order.to_currency,
        to_network=order.to_network,
        amount=order.amount,
        payout_address=protection.open(order.payout_address_sealed, context=PAYOUT_CONTEXT),
        deposit_address=order.deposit_address,
        queue_position=order.queue_position,
        estimated_wait_seconds=order.estimated_wait_seconds,
        priority=order.priority,  # type: ignore[arg-type]
        expires_at=order.expires_at,
        created_at=order.created_at,
        updated_at=order.updated_at,
        version=order.version,
    )


async def _claim_idempotency_key(
    session: AsyncSession, *, owner: str, key: str, fingerprint: str, protection: DataProtection
) -> OrderResponse | None:
    """Reserve ``key`` for this request, or return the stored answer of the request that used it."""
    dialect = session.bind.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    claimed = await session.scalar(
        insert(IdempotencyKey)
        .values(owner=owner, key=key, request_fingerprint=fingerprint, created_at=now)
        .on_conflict_do_nothing(index_elements=["owner", "key"])
        .returning(IdempotencyKey.id)
    )
    if claimed is not None:
        return None
    existing = (
        await session.execute(
            select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        )
    ).scalar_one()
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was already used with a different request body.",
            errors=[
                {"field": "Idempotency-Key", "message": "reused with a different body", "type": "reused"}
            ],
        )
    if existing.response_sealed is None or existing.response_status is None:
        if now - existing.created_at < IN_FLIGHT_TIMEOUT:
            raise IdempotencyKeyInFlightError("The first request with this Idempotency-Key is still running.")
        raise IdempotencyKeyInFlightError(
            "The first request with this Idempotency-Key did not finish; use a new key."
        )
    body = json.loads(protection.open(existing.response_sealed, context=IDEMPOTENCY_CONTEXT))
    return OrderResponse(status_code=existing.response_status, body=body)


async def _holds_open_orders(session: AsyncSession, *, column: Any, value: str, limit: int) -> bool:
    """Whether ``column == value`` already holds ``limit`` open orders (reads at most ``limit`` rows)."""
    open_orders = (
        select(Order.id)
        .where(column == value, Order.status.in_([s.value for s in OPEN]))
        .limit(limit)
        .subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(open_orders)) or 0) >= limit


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
    from_network, to_network, payout, amount = validate_order(request, settings)
    await rate_limiter.hit(name="orders:create", identifier=client_ip, limit=settings.order_rate_limit)
    email_index = protection.email_index(request.email)
    fingerprint = request_fingerprint(request)
    if idempotency_key is not None:
        replay = await _claim_idempotency_key(
            session, owner=email_index, key=idempotency_key, fingerprint=fingerprint, protection=protection
        )
        if replay is not None:
            return replay

    full_session = principal if principal is not None and principal.kind == "full" else None
    # Locked until commit: one customer's concurrent orders queue here, so the limit cannot be raced past.
    customer = await lock_or_create_customer(
        session=session, protection=protection, email=request.email, locale=request.locale
    )
    if full_session is not None and full_session.customer_id != customer.id:
        raise _field_error("email", "does not match the signed-in customer")
    limit = settings.max_open_orders_per_customer
    if await _holds_open_orders(session, column=Order.customer_id, value=customer.id, limit=limit):
        raise OpenOrderLimitError(
            f"A customer may hold {limit} open orders; finish or cancel one first.", extra={"limit": limit}
        )
    limit = settings.max_open_orders_per_ip
    if await _holds_open_orders(session, column=Order.client_ip, value=client_ip, limit=limit):
        raise OpenOrderLimitError("Too many open orders from this network address.", extra={"limit": limit})

    now = utcnow()
    rules = settings.currencies[request.from_currency]
    order = Order(
        id=str(uuid.uuid4()),
        customer_id=customer.id,
        from_currency=request.from_currency,
        from_network=from_network,
        to_currency=request.to_currency,
        to_network=to_network,
        amount=amount,
        payout_address_sealed=protection.seal(payout, context=PAYOUT_CONTEXT),
        locale=request.locale,
        status=OrderStatus.QUEUED.value,
        priority=decide_priority(
            rules=settings.priority,
            currency=request.from_currency,
            amount=amount,
            completed_orders=customer.completed_orders,
        ).value,
        allocation_state=AllocationState.PENDING.value,
        client_ip=client_ip,
        version=1,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(minutes=rules.queued_minutes),
    )
    issued = None
    if full_session is None:
        issued = await open_order_session(
            session=session, settings=settings, customer_id=customer.id, order_id=order.id
        )
    order.session_id = full_session.session_id if full_session else issued.session_id if issued else None
    session.add(order)
    await session.flush()
    await record_event(session, order=order, from_status=None, actor=Actor(kind="customer", id=customer.id))
    # Commit the order before asking wallet-pool: from here on it exists whatever happens to that call.
    await session.commit()

    try:
        allocation: Allocation | None = await wallet_pool.allocate(
            order_id=order.id,
            currency=order.from_currency,
            network=order.from_network,
            priority=order.priority,
        )
    except (PeerUnavailableError, PeerRejectedError):
        allocation = None  # the reconciler asks again; the order is accepted as queued, position unknown
    if allocation is not None:
        await apply_allocation(session, order=order, allocation=allocation, settings=settings, announce=False)
    await announce_order(session, order=order)

    created = OrderCreated(
        **read_order(order, protection=protection).model_dump(),
        session_token=issued.token if issued else None,
    )
    response = OrderResponse(status_code=201, body=created.model_dump(mode="json"))
    if idempotency_key is not None:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.owner == email_index, IdempotencyKey.key == idempotency_key)
            .values(
                response_status=response.status_code,
                response_sealed=protection.seal(json.dumps(response.body), context=IDEMPOTENCY_CONTEXT),
                completed_at=utcnow(),
            )
        )
    return response


async def announce_order(session: AsyncSession, *, order: Order) -> None:
    """Tell the notifier about a new order once its first allocation outcome is known."""
    if order.announced_at is not None:
        return
    now = utcnow()
    await add_event(
        session,
        outbox,
        destination="notifier",
        event_type="order.created",
        payload={**order_payload(order), **await customer_email_fields(session, order=order)},
        aggregate_id=order.id,
    )
    await session.execute(update(Order).where(Order.id == order.id).values(announced_at=now))
    order.announced_at = now


async def apply_allocation(
    session: AsyncSession, *, order: Order, allocation: Allocation, settings: Settings, announce: bool = True
) -> None:
    """Record wallet-pool's answer: an address moves the order to ``awaiting_deposit``; a queue place is
    remembered. An address for an order that is already closed goes straight back to the pool."""
    if allocation.status == "allocated" and allocation.address:
        if order.status == OrderStatus.QUEUED:
            now = utcnow()
            rules = settings.currencies[order.from_currency]
            await change_status(
                session,
                order=order,
                to=OrderStatus.AWAITING_DEPOSIT,
                actor=SYSTEM_WALLET_POOL,
                announce=announce,
                changes={
                    "deposit_address": allocation.address,
                    "allocation_state": AllocationState.ALLOCATED.value,
                    "address_assigned_at": now,
                    "queue_position": None,
                    "estimated_wait_seconds": None,
                    "expires_at": now + timedelta(minutes=rules.awaiting_deposit_minutes),
                },
                details={"deposit_address": allocation.address},
            )
        elif order.allocation_state != AllocationState.RELEASED:
            await request_release(session, order=order)
    elif allocation.status == "queued" and order.status == OrderStatus.QUEUED:
        values = {
            "allocation_state": AllocationState.QUEUED.value,
            "queue_position": allocation.position,
            "estimated_wait_seconds": round(allocation.estimated_wait_seconds)
            if allocation.estimated_wait_seconds is not None
            else None,
        }
        await session.execute(update(Order).where(Order.id == order.id).values(**values))
        for name, value in values.items():
            setattr(order, name, value)


async def load_order(session: AsyncSession, *, order_id: str, for_update: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id)
    if for_update:
        query = query.with_for_update()
    order = (await session.execute(query)).scalar_one_or_none()
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
            live = await wallet_pool.allocation(order_id=order.id)
        except DomainError:
            return read  # wallet-pool unreachable: the last known position is still a fair answer
        if live.status == "queued":
            read.queue_position = live.position
            read.estimated_wait_seconds = (
                round(live.estimated_wait_seconds) if live.estimated_wait_seconds is not None else None
            )
    return read


def _encode_cursor(created_at: datetime, order_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{order_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, order_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), order_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise _field_error("cursor", "not a cursor this API returned") from exc


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
    query = select(Order).where(Order.customer_id == principal.customer_id)
    if status is not None:
        query = query.where(Order.status == status.value)
    if cursor:
        created_at, order_id = _decode_cursor(cursor)
        query = query.where(
            or_(Order.created_at < created_at, and_(Order.created_at == created_at, Order.id < order_id))
        )
    rows = (
        await session.execute(query.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1))
    ).scalars()
    orders = list(rows)
    page, more = orders[:limit], len(orders) > limit
    return OrderPage(
        items=[read_order(o, protection=protection) for o in page],
        next_cursor=_encode_cursor(page[-1].created_at, page[-1].id) if more and page else None,
    )


async def cancel_order(
    *,
    session: AsyncSession,
    protection: DataProtection,
    principal: CustomerPrincipal,
    order_id: str,
    expected_version: int | None,
) -> OrderRead:
    """The customer cancels an order not yet taken by an operator; its address goes back to the pool."""
    order = await customer_order(session, principal=principal, order_id=order_id, for_update=True)
    if order.status not in (OrderStatus.QUEUED, OrderStatus.AWAITING_DEPOSIT):
        raise OrderTransitionError(
            f"An order that is {order.status} can no longer be cancelled by the customer.",
            extra={"order_status": order.status},
        )
    await change_status(
        session,
        order=order,
        to=OrderStatus.CANCELLED,
        actor=Actor(kind="customer", id=principal.customer_id),
        expected_version=expected_version,
    )
    return read_order(order, protection=protection)
