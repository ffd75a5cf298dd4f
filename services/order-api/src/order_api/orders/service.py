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
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from coin_addresses import InvalidAddressError, UnsupportedNetworkError, default_network, validate_address
from desk_contracts.events import OrderCreated as OrderCreatedEvent
from order_api.auth.service import (
    SESSION_TOKEN_PREFIX,
    CustomerPrincipal,
    IssuedSession,
    hash_token,
    open_order_session,
)
from order_api.clients.wallet_pool import WALLET_POOL, Allocation, WalletPoolClient
from order_api.customers.models import CUSTOMER_ROLE, new_customer_id
from order_api.customers.service import EMAIL_CONTEXT, lock_or_create_customer
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
    ORDER_CREATED,
    SYSTEM_WALLET_POOL,
    Actor,
    change_status,
    customer_email_fields,
    order_fields,
    record_event,
    request_release,
)
from order_api.orders.models import AllocationState, IdempotencyKey, Order, OrderStatus, Priority
from order_api.orders.schemas import OrderCreate, OrderCreated, OrderPage, OrderRead
from order_api.protection import DataProtection
from order_api.settings import CurrencyRules, PriorityRules, Settings
from servicekit.client import deadline
from servicekit.db import Driver, driver, insert_ignoring, utcnow
from servicekit.errors import DomainError, PeerAnswerInvalidError
from servicekit.outbox import publish
from servicekit.pagination import Keyset
from servicekit.ratelimit import RateLimiter
from servicekit.telemetry import current_trace_id, current_traceparent

log = logging.getLogger("order_api.orders")
PAYOUT_CONTEXT = "order.payout_address"
IDEMPOTENCY_CONTEXT = "order.idempotent_response"
INTAKE_GRACE = timedelta(seconds=10)
"""How long beyond its wallet-pool budget an intake request may take (database waits, the rate limit):
an order older than both, still unannounced, was left by a request that died."""


LIVE_POSITION_BUDGET_SECONDS = 1.0
"""How long reading an order waits for wallet-pool's live queue place (attempts included) before answering
with the last known one."""


def intake_abandoned_before(settings: Settings) -> datetime:
    """Orders created before this moment are no longer in the hands of the request that made them."""
    return utcnow() - timedelta(seconds=settings.intake_budget_seconds) - INTAKE_GRACE


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


def _order_fields(order: Order, *, protection: DataProtection) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status,
        "from_currency": order.from_currency,
        "from_network": order.from_network,
        "to_currency": order.to_currency,
        "to_network": order.to_network,
        "amount": order.amount,
        "payout_address": (
            protection.open(order.payout_address_sealed, context=PAYOUT_CONTEXT)
            if order.payout_address_sealed  # empty once the customer was erased
            else None
        ),
        "deposit_address": order.deposit_address,
        "queue_position": order.queue_position,
        "estimated_wait_seconds": order.estimated_wait_seconds,
        "priority": order.priority,
        "expires_at": order.expires_at,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "version": order.version,
    }


def read_order(order: Order, *, protection: DataProtection) -> OrderRead:
    return OrderRead(**_order_fields(order, protection=protection))


async def _claim_idempotency_key(
    session: AsyncSession,
    *,
    claim: _IdempotencyClaim,
    order_id: str,
    settings: Settings,
    protection: DataProtection,
    full_session: CustomerPrincipal | None,
) -> OrderResponse | None:
    """Reserve the key for this request (which will write order ``order_id``), or answer as the request that
    used it did: its stored answer; while it may still be running, ``409`` with ``Retry-After``; if it died
    after writing its order, that order (``_recover_order``); if it died before, the key is this request's."""
    now = utcnow()
    claimed = await session.scalar(
        insert_ignoring(
            session,
            IdempotencyKey,
            {
                "owner": claim.owner,
                "key": claim.key,
                "request_fingerprint": claim.fingerprint,
                "order_id": order_id,
                "created_at": now,
            },
            conflict=["owner", "key"],
        ).returning(IdempotencyKey.id)
    )
    if claimed is not None:
        return None
    existing = (
        await session.execute(
            select(IdempotencyKey)
            .where(IdempotencyKey.owner == claim.owner, IdempotencyKey.key == claim.key)
            .with_for_update()  # one retry at a time recovers what a dead request left
        )
    ).scalar_one()
    if existing.request_fingerprint != claim.fingerprint:
        raise IdempotencyKeyReusedError(
            "This Idempotency-Key was already used with a different request body.",
            errors=[
                {"field": "Idempotency-Key", "message": "reused with a different body", "type": "reused"}
            ],
        )
    if existing.response_sealed is not None and existing.response_status is not None:
        body = json.loads(protection.open(existing.response_sealed, context=IDEMPOTENCY_CONTEXT))
        return OrderResponse(status_code=existing.response_status, body=body)
    abandoned_before = intake_abandoned_before(settings)
    if existing.created_at > abandoned_before:
        wait = math.ceil((existing.created_at - abandoned_before).total_seconds())
        raise IdempotencyKeyInFlightError(
            "The first request with this Idempotency-Key is still running; retry it shortly.",
            extra={"retry_after_seconds": max(1, wait)},
        )
    order = (
        None
        if existing.order_id is None
        else await session.scalar(
            select(Order)
            .where(Order.id == existing.order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )
    if order is None:  # the first request died before writing its order: the key is this request's now
        existing.order_id = order_id
        existing.created_at = now
        await session.flush()
        return None
    return await _recover_order(
        session, order=order, claim=claim, settings=settings, protection=protection, full_session=full_session
    )


async def _recover_order(
    session: AsyncSession,
    *,
    order: Order,
    claim: _IdempotencyClaim,
    settings: Settings,
    protection: DataProtection,
    full_session: CustomerPrincipal | None,
) -> OrderResponse:
    """Finish what a request that died after writing ``order`` left undone, and answer the retry with it:
    the order is announced as it is now (if nothing announced it yet; the reconciler gets it its address),
    and, as the dead request's session token cannot be recovered (only its hash is stored), a new session for
    this order is issued. The answer is stored under the key, so later retries get the same one."""
    if full_session is not None and full_session.customer_id != order.customer_id:
        raise _field_error("email", "does not match the signed-in customer")
    await announce_order(session, order=order)
    issued = None
    if full_session is None:
        issued = await open_order_session(
            session=session, settings=settings, customer_id=order.customer_id, order_id=order.id
        )
    response = _created_response(order, issued=issued, protection=protection)
    await _store_idempotent_response(
        session, owner=claim.owner, key=claim.key, response=response, protection=protection
    )
    log.info("an unfinished order request was recovered", extra={"order_id": order.id})
    return response


async def _holds_open_orders(session: AsyncSession, *, holder: ColumnElement[bool], limit: int) -> bool:
    """Whether the orders matching ``holder`` already hold ``limit`` open ones (reads at most ``limit`` rows)."""
    open_orders = (
        select(Order.id).where(holder, Order.status.in_([s.value for s in OPEN])).limit(limit).subquery()
    )
    return int(await session.scalar(select(func.count()).select_from(open_orders)) or 0) >= limit


def _customer_cap(customer_id: str, *, proven: bool, client_ip: str) -> ColumnElement[bool]:
    """The orders a new order of this customer is counted with against ``max_open_orders_per_customer``.

    Only what the caller has proven: with a full session (the mailbox proven by an emailed code), the
    customer's orders placed the same way; with just the email, the orders placed with just that email from
    the same client network. Whoever merely knows an email cannot fill the cap of its owner elsewhere, and
    a proven customer can always order up to the cap. Pool draining stays bounded by the per-network cap and
    rate limit, which count every order of the network."""
    if proven:
        return and_(Order.customer_id == customer_id, Order.mailbox_proven.is_(True))
    return and_(
        Order.customer_id == customer_id, Order.mailbox_proven.is_(False), Order.client_ip == client_ip
    )


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
    # Fails open: a customer is not refused because Redis is down (README, Security).
    await rate_limiter.hit(
        name="orders:create", identifier=client_ip, limit=settings.order_rate_limit, fail_open=True
    )
    email_index = protection.email_index(request.email)
    fingerprint = request_fingerprint(request)
    full_session = principal if principal is not None and principal.kind == "full" else None
    now = utcnow()
    rules = settings.currencies[request.from_currency]
    order = Order(
        id=str(uuid.uuid4()),
        from_currency=request.from_currency,
        from_network=from_network,
        to_currency=request.to_currency,
        to_network=to_network,
        amount=amount,
        payout_address_sealed=protection.seal(payout, context=PAYOUT_CONTEXT),
        locale=request.locale,
        status=OrderStatus.AWAITING_ADDRESS.value,
        allocation_state=AllocationState.PENDING.value,
        client_ip=client_ip,
        mailbox_proven=full_session is not None,
        version=1,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(minutes=rules.queued_minutes),
    )

    # The common case, a first order of a new customer, on PostgreSQL: one statement, then one more once
    # wallet-pool has answered (see _intake_for_new_customer). Everything else takes the general path.
    sql = driver(session) if full_session is None else None
    if sql is not None:
        key = (
            None if idempotency_key is None else _IdempotencyClaim(email_index, idempotency_key, fingerprint)
        )
        issued = await _intake_for_new_customer(
            sql,
            settings=settings,
            protection=protection,
            order=order,
            email=request.email,
            email_index=email_index,
            idempotency=key,
        )
        if issued is not None:
            allocation = await _ask_for_address(wallet_pool, order=order, settings=settings)
            return await _settle_new_order(
                session,
                sql=sql,
                order=order,
                allocation=allocation,
                settings=settings,
                protection=protection,
                issued=issued,
                email=request.email.strip(),
                idempotency=key,
            )

    if idempotency_key is not None:
        replay = await _claim_idempotency_key(
            session,
            claim=_IdempotencyClaim(email_index, idempotency_key, fingerprint),
            order_id=order.id,
            settings=settings,
            protection=protection,
            full_session=full_session,
        )
        if replay is not None:
            return replay

    # Locked until commit: one customer's concurrent orders queue here, so the limit cannot be raced past.
    customer = await lock_or_create_customer(
        session=session, protection=protection, email=request.email, locale=request.locale
    )
    if full_session is not None and full_session.customer_id != customer.id:
        raise _field_error("email", "does not match the signed-in customer")
    limit = settings.max_open_orders_per_customer
    if await _holds_open_orders(
        session,
        holder=_customer_cap(customer.id, proven=full_session is not None, client_ip=client_ip),
        limit=limit,
    ):
        raise OpenOrderLimitError(
            f"A customer may hold {limit} open orders; finish or cancel one first."
            if full_session is not None
            else f"This email holds {limit} open orders from this network; finish or cancel one first, or "
            "sign in with an emailed code (POST /v1/auth/email-code).",
            extra={"limit": limit},
        )
    limit = settings.max_open_orders_per_ip
    if await _holds_open_orders(session, holder=Order.client_ip == client_ip, limit=limit):
        raise _ip_limit_error(limit)

    order.customer_id = customer.id
    order.priority = decide_priority(
        rules=settings.priority,
        currency=request.from_currency,
        amount=amount,
        completed_orders=customer.completed_orders,
    ).value
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

    allocation = await _ask_for_address(wallet_pool, order=order, settings=settings)
    order = await _settle_order(session, order_id=order.id, allocation=allocation, settings=settings)

    response = _created_response(order, issued=issued, protection=protection)
    if idempotency_key is not None:
        await _store_idempotent_response(
            session, owner=email_index, key=idempotency_key, response=response, protection=protection
        )
    return response


async def _store_idempotent_response(
    session: AsyncSession, *, owner: str, key: str, response: OrderResponse, protection: DataProtection
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
        .values(
            response_status=response.status_code,
            response_sealed=protection.seal(json.dumps(response.body), context=IDEMPOTENCY_CONTEXT),
            completed_at=utcnow(),
        )
    )


@dataclass(frozen=True, slots=True)
class _IdempotencyClaim:
    """The ``Idempotency-Key`` of a request: whose (the email's blind index), the key, and the body's hash."""

    owner: str
    key: str
    fingerprint: str


def _ip_limit_error(limit: int) -> OpenOrderLimitError:
    return OpenOrderLimitError("Too many open orders from this network address.", extra={"limit": limit})


def _created_response(
    order: Order, *, issued: IssuedSession | None, protection: DataProtection
) -> OrderResponse:
    created = OrderCreated(
        **_order_fields(order, protection=protection), session_token=issued.token if issued else None
    )
    return OrderResponse(status_code=201, body=created.model_dump(mode="json"))


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


def log_unusable_answer(error: DomainError, *, order_id: str) -> None:
    """A warning (with the request's correlation id, like every log line) that wallet-pool gave no usable
    answer for an order; the order is left to the reconciler."""
    log.warning(
        "no usable answer from wallet-pool; the order waits for the reconciler",
        extra={
            "order_id": order_id,
            "error": type(error).__name__,
            "code": error.code,
            "detail": error.detail,
        },
    )


def address_taken(order: Order) -> PeerAnswerInvalidError:
    return PeerAnswerInvalidError.of(WALLET_POOL, "an address another open order holds", order_id=order.id)


async def _settle_order(
    session: AsyncSession, *, order_id: str, allocation: Allocation | None, settings: Settings
) -> Order:
    """Apply wallet-pool's answer at intake to the order as it is now (read locked) and announce it. An
    address another open order holds leaves the order as it is (allocation pending: the reconciler asks
    again). Where something announced the order meanwhile (the sweeper, after a very slow intake), the change
    is announced as a change of status instead, so the customer still hears of the address once."""
    order = await load_order(session, order_id=order_id, for_update=True)
    if allocation is not None:
        try:
            await apply_allocation(
                session,
                order=order,
                allocation=allocation,
                settings=settings,
                announce=order.announced_at is not None,
            )
        except PeerAnswerInvalidError as error:
            log_unusable_answer(error, order_id=order.id)
    await announce_order(session, order=order)
    return order


# Intake of a new customer's first order on PostgreSQL, in two statements around the call to wallet-pool
# instead of two ORM transactions of about a dozen statements (README, "Performance"). Each statement is a
# transaction by itself, so the guarantees are the general path's:
#
# 1. _CREATE_FOR_NEW_CUSTOMER writes the customer, the order's session, the order, its first history row and
#    the claim of its Idempotency-Key (if any), all or nothing, unless the client address holds its limit of
#    open orders (then nothing is written). A new customer holds no orders, so the per-customer limit cannot
#    bite, and no idempotency keys (keys belong to the email's blind index and are only ever written with
#    its customer). An email that is already a customer (the insert conflicts on the blind index, after
#    waiting for a concurrent first order to commit) writes nothing either, and the general path, which
#    replays a known key and locks the customer row before counting, takes over.
# 2. _SETTLE_NEW_ORDER applies wallet-pool's answer exactly as apply_allocation does, announces the order
#    (order.created in the outbox) and stores the response under the Idempotency-Key, provided nothing
#    changed the order since step 1 (else the general code applies the answer to the order as it is now).
_CREATE_FOR_NEW_CUSTOMER = """
WITH by_ip AS (
    SELECT count(*) AS open_orders FROM (
        SELECT 1 FROM "order" WHERE client_ip = $1 AND status = ANY($2::varchar[]) LIMIT $3
    ) AS open_order
), new_customer AS (
    INSERT INTO customer (id, email_sealed, email_index, locale, role, created_at, completed_orders)
    SELECT $4, $5, $6, $7, $8, $9, 0 FROM by_ip WHERE by_ip.open_orders < $3
    ON CONFLICT (email_index) DO NOTHING
    RETURNING id
), new_session AS (
    INSERT INTO customer_session (id, customer_id, token_hash, kind, order_id, created_at, expires_at)
    SELECT $10, id, $11, 'order', $12, $9, $13 FROM new_customer
), new_order AS (
    INSERT INTO "order" (id, customer_id, session_id, from_currency, from_network, to_currency, to_network,
                         amount, payout_address_sealed, locale, status, priority, allocation_state, client_ip,
                         version, created_at, updated_at, expires_at)
    SELECT $12, id, $10, $14, $15, $16, $17, $18, $19, $7, $20, $21, $22, $1, 1, $9, $9, $23 FROM new_customer
    RETURNING id
), history AS (
    INSERT INTO order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                             created_at)
    SELECT id, NULL, $20, 'customer:' || $4, 'rest', $24, '{}', $9 FROM new_order
), claimed_key AS (
    INSERT INTO idempotency_key (owner, key, request_fingerprint, order_id, created_at)
    SELECT $6, $25, $26, id, $9 FROM new_order WHERE $25::varchar IS NOT NULL
)
SELECT by_ip.open_orders, EXISTS (SELECT FROM new_order) AS created,
       EXISTS (SELECT FROM customer WHERE email_index = $6) AS known_before
FROM by_ip
"""

_SETTLE_NEW_ORDER = """
WITH settled AS (
    UPDATE "order"
    SET status = $2, version = $3, updated_at = $4, deposit_address = $5, allocation_state = $6,
        address_assigned_at = $7, queue_position = $8, estimated_wait_seconds = $9, expires_at = $10,
        announced_at = $11
    WHERE id = $1 AND version = 1 AND status = 'awaiting_address' AND announced_at IS NULL
    RETURNING id
), history AS (
    INSERT INTO order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                             created_at)
    SELECT id, 'awaiting_address', $2, $12, 'system', $13, $14, $4 FROM settled WHERE $2 <> 'awaiting_address'
), announcement AS (
    INSERT INTO outbox (id, destination, event_type, aggregate_id, payload, traceparent, created_at,
                        available_at, attempts)
    SELECT $15, 'notifier', 'order.created', id, $16, $17, $11, $11, 0 FROM settled
), answered AS (
    UPDATE idempotency_key SET response_status = 201, response_sealed = $20, completed_at = $11
    WHERE owner = $18 AND key = $19 AND EXISTS (SELECT FROM settled)
)
SELECT EXISTS (SELECT FROM settled) AS settled
"""


async def _intake_for_new_customer(
    sql: Driver,
    *,
    settings: Settings,
    protection: DataProtection,
    order: Order,
    email: str,
    email_index: str,
    idempotency: _IdempotencyClaim | None,
) -> IssuedSession | None:
    """Step 1 above. Returns the order's session, or ``None`` (nothing written) when the email is already a
    customer's; raises ``OpenOrderLimitError`` (nothing written) when the client address holds its limit."""
    customer_id = new_customer_id()
    order.customer_id = customer_id
    order.priority = decide_priority(
        rules=settings.priority, currency=order.from_currency, amount=order.amount, completed_orders=0
    ).value
    token = SESSION_TOKEN_PREFIX + secrets.token_urlsafe(32)
    issued = IssuedSession(
        token=token,
        session_id=str(uuid.uuid4()),
        kind="order",
        expires_at=order.created_at + timedelta(days=settings.order_session_days),
    )
    order.session_id = issued.session_id
    limit = settings.max_open_orders_per_ip
    row = await sql.fetchrow(
        "create order for new customer",
        _CREATE_FOR_NEW_CUSTOMER,
        order.client_ip,
        sorted(s.value for s in OPEN),
        limit,
        customer_id,
        protection.seal(email.strip(), context=EMAIL_CONTEXT),
        email_index,
        order.locale,
        CUSTOMER_ROLE,
        order.created_at,
        issued.session_id,
        hash_token(token),
        order.id,
        issued.expires_at,
        order.from_currency,
        order.from_network,
        order.to_currency,
        order.to_network,
        order.amount,
        order.payout_address_sealed,
        order.status,
        order.priority,
        order.allocation_state,
        order.expires_at,
        current_trace_id(),
        idempotency.key if idempotency else None,
        idempotency.fingerprint if idempotency else None,
    )
    if row is None:  # pragma: no cover - the statement always returns its one row
        raise RuntimeError("order intake statement returned no row")
    if row["created"]:
        return issued
    if row["open_orders"] >= limit and not row["known_before"]:
        raise _ip_limit_error(limit)
    return None  # a known customer: the general path checks their limit first, under their row lock


async def _settle_new_order(
    session: AsyncSession,
    *,
    sql: Driver,
    order: Order,
    allocation: Allocation | None,
    settings: Settings,
    protection: DataProtection,
    issued: IssuedSession,
    email: str,
    idempotency: _IdempotencyClaim | None,
) -> OrderResponse:
    """Step 2 above: apply wallet-pool's answer to the order made by step 1, announce it, and answer. An
    address another open order holds (the unique index refuses it; the statement then wrote nothing) is
    dropped and the order settled without one."""
    now = utcnow()
    history_details: dict[str, Any] = {}
    if allocation is not None and allocation.status == "allocated" and allocation.address:
        rules = settings.currencies[order.from_currency]
        order.status = OrderStatus.AWAITING_DEPOSIT.value
        order.version += 1
        order.updated_at = now
        order.deposit_address = allocation.address
        order.allocation_state = AllocationState.ALLOCATED.value
        order.address_assigned_at = now
        order.expires_at = now + timedelta(minutes=rules.awaiting_deposit_minutes)
        history_details = {"deposit_address": allocation.address}
    elif allocation is not None and allocation.status == "queued":
        order.status = OrderStatus.QUEUED.value
        order.version += 1
        order.updated_at = now
        order.allocation_state = AllocationState.QUEUED.value
        order.queue_position = allocation.position
        order.estimated_wait_seconds = (
            round(allocation.estimated_wait_seconds)
            if allocation.estimated_wait_seconds is not None
            else None
        )
    order.announced_at = now
    payload = OrderCreatedEvent(
        **order_fields(order),
        **protection.sealed_event_fields(
            {"customer_email": email.strip()}, event_type=ORDER_CREATED, aggregate_id=order.id
        ),
    ).payload()
    response = _created_response(order, issued=issued, protection=protection)
    try:
        settled = await sql.fetchrow(
            "settle new order",
            _SETTLE_NEW_ORDER,
            order.id,
            order.status,
            order.version,
            order.updated_at,
            order.deposit_address,
            order.allocation_state,
            order.address_assigned_at,
            order.queue_position,
            order.estimated_wait_seconds,
            order.expires_at,
            order.announced_at,
            SYSTEM_WALLET_POOL.label,
            current_trace_id(),
            json.dumps(history_details),
            str(uuid.uuid4()),
            json.dumps(payload),
            current_traceparent(),
            idempotency.owner if idempotency else None,
            idempotency.key if idempotency else None,
            protection.seal(json.dumps(response.body), context=IDEMPOTENCY_CONTEXT) if idempotency else None,
        )
    except asyncpg.UniqueViolationError:
        if allocation is None:  # pragma: no cover - only the deposit address is unique here
            raise
        # The unique index refused the address (another open order holds it) and the statement wrote
        # nothing: settle the order without it, as if wallet-pool had not answered.
        log_unusable_answer(address_taken(order), order_id=order.id)
        _forget_address(order, settings=settings)
        return await _settle_new_order(
            session,
            sql=sql,
            order=order,
            allocation=None,
            settings=settings,
            protection=protection,
            issued=issued,
            email=email,
            idempotency=idempotency,
        )
    if settled and settled["settled"]:
        sql.wake_workers()  # the relay delivers order.created
        return response
    # Changed meanwhile (a wallet.assigned event or the sweeper got there first): apply the answer to the
    # order as it is.
    current = await _settle_order(session, order_id=order.id, allocation=allocation, settings=settings)
    response = _created_response(current, issued=issued, protection=protection)
    if idempotency is not None:
        await _store_idempotent_response(
            session, owner=idempotency.owner, key=idempotency.key, response=response, protection=protection
        )
    return response


def _forget_address(order: Order, *, settings: Settings) -> None:
    """Undo, on the unsaved ``order``, what settling an address did to it (``_settle_new_order``)."""
    order.status = OrderStatus.AWAITING_ADDRESS.value
    order.version = 1
    order.deposit_address = None
    order.allocation_state = AllocationState.PENDING.value
    order.address_assigned_at = None
    order.expires_at = order.created_at + timedelta(
        minutes=settings.currencies[order.from_currency].queued_minutes
    )


async def announce_order(session: AsyncSession, *, order: Order) -> None:
    """Tell the notifier about a new order, as it is now, unless it was told already: ``announced_at`` is
    set only where it is still empty, and ``order.created`` written only by the one that set it."""
    if order.announced_at is not None:  # never emptied again once set: nothing to ask the database
        return
    now = utcnow()
    claimed = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.announced_at.is_(None))
        .values(announced_at=now)
        .returning(Order.id)
    )
    if claimed is None:
        return
    set_committed_value(order, "announced_at", now)
    created = OrderCreatedEvent(
        **order_fields(order), **await customer_email_fields(session, order=order, event_type=ORDER_CREATED)
    )
    await publish(session, outbox, destination="notifier", event=created, aggregate_id=order.id)


async def apply_allocation(
    session: AsyncSession, *, order: Order, allocation: Allocation, settings: Settings, announce: bool = True
) -> None:
    """Record wallet-pool's (checked) answer: an address moves an order awaiting it (or queued for it) to
    ``awaiting_deposit``; a queue place moves an order awaiting its address to ``queued``, or updates the
    place of a queued one. An address for an order that is already closed goes straight back to the pool.

    An address another open order holds is refused by the database's unique index, in a savepoint so the
    caller's transaction goes on: ``PeerAnswerInvalidError``, and the order is left as it was.
    """
    if allocation.status == "allocated" and allocation.address:
        if order.status in (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED):
            now = utcnow()
            rules = settings.currencies[order.from_currency]
            try:
                async with session.begin_nested():
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
            except IntegrityError as exc:
                raise address_taken(order) from exc
        elif order.allocation_state != AllocationState.RELEASED:
            await request_release(session, order=order)
    elif allocation.status == "queued" and order.status in (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED):
        values: dict[str, Any] = {
            "allocation_state": AllocationState.QUEUED.value,
            "queue_position": allocation.position,
            "estimated_wait_seconds": round(allocation.estimated_wait_seconds)
            if allocation.estimated_wait_seconds is not None
            else None,
        }
        if order.status == OrderStatus.AWAITING_ADDRESS:
            await change_status(
                session,
                order=order,
                to=OrderStatus.QUEUED,
                actor=SYSTEM_WALLET_POOL,
                announce=announce,
                changes=values,
            )
            return
        await session.execute(update(Order).where(Order.id == order.id).values(**values))
        for name, value in values.items():
            set_committed_value(order, name, value)


async def load_order(session: AsyncSession, *, order_id: str, for_update: bool = False) -> Order:
    query = select(Order).where(Order.id == order_id)
    if for_update:  # a locked read is a fresh read, whatever this session held of the order before
        query = query.with_for_update().execution_options(populate_existing=True)
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


NEWEST_FIRST = Keyset("orders", Order.created_at, Order.id, newest_first=True)
"""A customer's orders as listed."""


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
    rows = (await session.scalars(NEWEST_FIRST.select(query, cursor=cursor, limit=limit))).all()
    page, next_cursor = NEWEST_FIRST.cut(rows, limit=limit)
    return OrderPage(items=[read_order(o, protection=protection) for o in page], next_cursor=next_cursor)


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
    if order.status not in (OrderStatus.AWAITING_ADDRESS, OrderStatus.QUEUED, OrderStatus.AWAITING_DEPOSIT):
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
