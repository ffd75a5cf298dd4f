"""Two ways of storing the same intake decision (``orders.intake``), side by side.

- The fast path: a new customer's first order on PostgreSQL, in two hand-written statements on the driver
  (``servicekit.db.Driver``) around the call to wallet-pool, instead of two ORM transactions of about a dozen
  statements (README, "Performance"). Each statement is a transaction by itself.
- The general path: every other order (a returning customer, a signed-in one, any order on SQLite), through
  the ORM in the request's session: claim the ``Idempotency-Key``, write the order, commit
  (``commit_before_asking_wallet_pool``), then settle wallet-pool's answer.

Whichever ran, the order row, its history, the ``order.created`` announcement and the answer stored under the
``Idempotency-Key`` are the same: ``tests/test_intake_paths.py`` pins both paths to one record. The writes of
wallet-pool's answer (``apply_allocation``, ``announce_order``) are shared with the reconciler
(``workers.sweeper``) and the ``wallet.assigned`` handler (``orders.events``).
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from order_api.auth.service import (
    SESSION_TOKEN_PREFIX,
    CustomerPrincipal,
    IssuedSession,
    hash_token,
    open_order_session,
)
from order_api.clients.wallet_pool import WALLET_POOL, Allocation
from order_api.customers.models import CUSTOMER_ROLE, new_customer_id
from order_api.customers.service import EMAIL_CONTEXT, lock_or_create_customer
from order_api.db import outbox
from order_api.orders.errors import OrderNotFoundError
from order_api.orders.intake import (
    IdempotencyClaim,
    OpenOrderCaps,
    OrderResponse,
    Settlement,
    announcement,
    check_signed_in_customer,
    created_response,
    decide_priority,
    judge_earlier_use,
    opening_entry,
    settlement,
)
from order_api.orders.lifecycle import (
    OPEN,
    change_status,
    customer_email_fields,
    record_event,
    request_release,
)
from order_api.orders.models import AllocationState, IdempotencyKey, Order, OrderStatus
from order_api.orders.repository import (
    find_order,
    holds_open_orders,
    locked_idempotency_key,
    orders_of_customer,
    orders_of_network,
    reserve_idempotency_key,
)
from order_api.protection import DataProtection
from order_api.settings import Settings
from servicekit.db import Driver, utcnow
from servicekit.errors import DomainError, PeerAnswerInvalidError
from servicekit.outbox import publish
from servicekit.statements import NamedStatement
from servicekit.telemetry import current_trace_id, current_traceparent

log = logging.getLogger("order_api.orders")
PAYOUT_CONTEXT = "order.payout_address"
IDEMPOTENCY_CONTEXT = "order.idempotent_response"


def open_payout_address(order: Order, *, protection: DataProtection) -> str | None:
    """The order's payout address in clear; ``None`` once its customer was erased."""
    if not order.payout_address_sealed:
        return None
    return protection.open(order.payout_address_sealed, context=PAYOUT_CONTEXT)


# -- wallet-pool's answer: intake, the reconciler and wallet.assigned store it alike ----------------------


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


async def announce_order(session: AsyncSession, *, protection: DataProtection, order: Order) -> None:
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
    announced = announcement(order)
    sealed_email = await customer_email_fields(
        session, protection=protection, order=order, event_type=announced.event_type
    )
    await publish(
        session,
        outbox,
        destination=announced.destination,
        event=announced.event(sealed_email=sealed_email),
        aggregate_id=announced.aggregate_id,
    )


async def apply_allocation(
    session: AsyncSession,
    *,
    order: Order,
    allocation: Allocation,
    settings: Settings,
    protection: DataProtection,
) -> None:
    """Store wallet-pool's (checked) answer as ``intake.settlement`` decides. An address for an order that
    no longer waits for one (closed meanwhile) goes straight back to the pool. An order already announced
    hears of the change as a change of status; one not yet announced is announced by the caller, with it.

    An address another open order holds is refused by the database's unique index, in a savepoint so the
    caller's transaction goes on: ``PeerAnswerInvalidError``, and the order is left as it was.
    """
    announce = order.announced_at is not None
    settled = settlement(
        status=order.status,
        allocation=allocation,
        now=utcnow(),
        rules=settings.currencies[order.from_currency],
    )
    if settled is None:
        if (
            allocation.status == "allocated"
            and allocation.address
            and order.allocation_state != AllocationState.RELEASED
        ):
            await request_release(session, order=order)
        return
    if settled.to is None:  # a queued order's new place: not a change of status
        await session.execute(update(Order).where(Order.id == order.id).values(**settled.changes))
        for name, value in settled.changes.items():
            set_committed_value(order, name, value)
        return
    if settled.to != OrderStatus.AWAITING_DEPOSIT:
        await _change_status(
            session, protection=protection, order=order, to=settled.to, settled=settled, announce=announce
        )
        return
    try:
        async with session.begin_nested():  # the deposit address is unique among open orders
            await _change_status(
                session, protection=protection, order=order, to=settled.to, settled=settled, announce=announce
            )
    except IntegrityError as exc:
        raise address_taken(order) from exc


async def _change_status(
    session: AsyncSession,
    *,
    protection: DataProtection,
    order: Order,
    to: OrderStatus,
    settled: Settlement,
    announce: bool,
) -> None:
    await change_status(
        session,
        protection=protection,
        order=order,
        to=to,
        actor=settled.actor,
        announce=announce,
        changes=settled.changes,
        details=settled.details,
    )


async def settle_order(
    session: AsyncSession,
    *,
    order_id: str,
    allocation: Allocation | None,
    settings: Settings,
    protection: DataProtection,
) -> Order:
    """Apply wallet-pool's answer at intake to the order as it is now (read locked) and announce it. An
    address another open order holds leaves the order as it is (allocation pending: the reconciler asks
    again). Where something announced the order meanwhile (the sweeper, after a very slow intake), the change
    is announced as a change of status instead, so the customer still hears of the address once."""
    order = await find_order(session, order_id=order_id, for_update=True)
    if order is None:  # pragma: no cover - this request wrote it, and orders are never deleted
        raise OrderNotFoundError(f"No order {order_id}.")
    if allocation is not None:
        try:
            await apply_allocation(
                session, order=order, allocation=allocation, settings=settings, protection=protection
            )
        except PeerAnswerInvalidError as error:
            log_unusable_answer(error, order_id=order.id)
    await announce_order(session, protection=protection, order=order)
    return order


# -- The fast path: a new customer's first order on PostgreSQL, one statement each side of wallet-pool ----
#
# Each statement is a transaction by itself, so the guarantees are the general path's:
#
# 1. CREATE_FOR_NEW_CUSTOMER writes the customer, the order's session, the order, its first history row and
#    the claim of its Idempotency-Key (if any), all or nothing, unless the client network holds its cap of
#    open orders (then nothing is written). A new customer holds no orders, so the per-customer cap cannot
#    bite, and no idempotency keys (keys belong to the email's blind index and are only ever written with
#    its customer). An email that is already a customer (the insert conflicts on the blind index, after
#    waiting for a concurrent first order to commit) writes nothing either, and the general path, which
#    replays a known key and locks the customer row before counting, takes over.
# 2. SETTLE_NEW_ORDER stores wallet-pool's answer as apply_allocation does (intake.settlement), announces the
#    order (order.created in the outbox) and stores the answer under the Idempotency-Key, provided nothing
#    changed the order since step 1 (else the general path's settle_order applies the answer to the order
#    as it is now).

CREATE_FOR_NEW_CUSTOMER = NamedStatement("""
WITH by_network AS (
    SELECT count(*) AS open_orders FROM (
        SELECT 1 FROM "order"
        WHERE client_ip = :client_ip AND status = ANY(:open_statuses::varchar[])
        LIMIT :per_network
    ) AS open_order
), new_customer AS (
    INSERT INTO customer (id, email_sealed, email_index, locale, role, created_at, completed_orders)
    SELECT :customer_id, :email_sealed, :email_index, :locale, :role, :created_at, 0
    FROM by_network WHERE by_network.open_orders < :per_network
    ON CONFLICT (email_index) DO NOTHING
    RETURNING id
), new_session AS (
    INSERT INTO customer_session (id, customer_id, token_hash, kind, order_id, created_at, expires_at)
    SELECT :session_id, id, :token_hash, :session_kind, :order_id, :created_at, :session_expires_at
    FROM new_customer
), new_order AS (
    INSERT INTO "order" (id, customer_id, session_id, from_currency, from_network, to_currency, to_network,
                         amount, payout_address_sealed, locale, status, priority, allocation_state, client_ip,
                         version, created_at, updated_at, expires_at)
    SELECT :order_id, id, :session_id, :from_currency, :from_network, :to_currency, :to_network,
           :amount, :payout_address_sealed, :locale, :status, :priority, :allocation_state, :client_ip,
           :version, :created_at, :created_at, :expires_at
    FROM new_customer
    RETURNING id
), history AS (
    INSERT INTO order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                             created_at)
    SELECT id, NULL, :status, :history_actor, :history_channel, :correlation_id, :history_details,
           :created_at
    FROM new_order
), claimed_key AS (
    INSERT INTO idempotency_key (owner, key, request_fingerprint, order_id, created_at)
    SELECT :email_index, :idempotency_key, :request_fingerprint, id, :created_at
    FROM new_order WHERE :idempotency_key::varchar IS NOT NULL
)
SELECT by_network.open_orders, EXISTS (SELECT FROM new_order) AS created,
       EXISTS (SELECT FROM customer WHERE email_index = :email_index) AS known_before
FROM by_network
""")

SETTLE_NEW_ORDER = NamedStatement("""
WITH settled AS (
    UPDATE "order"
    SET status = :status, version = :version, updated_at = :updated_at, deposit_address = :deposit_address,
        allocation_state = :allocation_state, address_assigned_at = :address_assigned_at,
        queue_position = :queue_position, estimated_wait_seconds = :estimated_wait_seconds,
        expires_at = :expires_at, announced_at = :announced_at
    WHERE id = :order_id AND version = 1 AND status = 'awaiting_address' AND announced_at IS NULL
    RETURNING id
), history AS (
    INSERT INTO order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                             created_at)
    SELECT id, :history_from_status, :history_to_status, :history_actor, :history_channel, :correlation_id,
           :history_details, :updated_at
    FROM settled WHERE :history_to_status::varchar IS NOT NULL
), announcement AS (
    INSERT INTO outbox (id, destination, event_type, aggregate_id, payload, traceparent, created_at,
                        available_at, attempts)
    SELECT :event_id, :event_destination, :event_type, id, :event_payload, :traceparent, :announced_at,
           :announced_at, 0
    FROM settled
), answered AS (
    UPDATE idempotency_key
    SET response_status = :response_status, response_sealed = :response_sealed, completed_at = :announced_at
    WHERE owner = :key_owner AND key = :idempotency_key AND EXISTS (SELECT FROM settled)
)
SELECT EXISTS (SELECT FROM settled) AS settled
""")

_OPEN_STATUSES = sorted(s.value for s in OPEN)


async def create_for_new_customer(
    sql: Driver,
    *,
    order: Order,
    caps: OpenOrderCaps,
    settings: Settings,
    protection: DataProtection,
    email: str,
    email_index: str,
    idempotency: IdempotencyClaim | None,
) -> IssuedSession | None:
    """Step 1 above. Returns the order's session, or ``None`` (nothing written) when the email is already a
    customer's; raises ``OpenOrderLimitError`` (nothing written) when the client network holds its cap."""
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
    entry = opening_entry(customer_id=customer_id)
    statement = CREATE_FOR_NEW_CUSTOMER
    row = await sql.fetchrow(
        "create order for new customer",
        statement.sql,
        *statement.arguments(
            client_ip=order.client_ip,
            open_statuses=_OPEN_STATUSES,
            per_network=caps.per_network,
            customer_id=customer_id,
            email_sealed=protection.seal(email.strip(), context=EMAIL_CONTEXT),
            email_index=email_index,
            locale=order.locale,
            role=CUSTOMER_ROLE,
            created_at=order.created_at,
            session_id=issued.session_id,
            token_hash=hash_token(token),
            session_kind=issued.kind,
            order_id=order.id,
            session_expires_at=issued.expires_at,
            from_currency=order.from_currency,
            from_network=order.from_network,
            to_currency=order.to_currency,
            to_network=order.to_network,
            amount=order.amount,
            payout_address_sealed=order.payout_address_sealed,
            status=order.status,
            priority=order.priority,
            allocation_state=order.allocation_state,
            version=order.version,
            expires_at=order.expires_at,
            history_actor=entry.actor.label,
            history_channel=entry.actor.channel,
            correlation_id=current_trace_id(),
            history_details=json.dumps(entry.details),
            idempotency_key=idempotency.key if idempotency else None,
            request_fingerprint=idempotency.fingerprint if idempotency else None,
        ),
    )
    if row is None:  # pragma: no cover - the statement always returns its one row
        raise RuntimeError("order intake statement returned no row")
    if row["created"]:
        return issued
    if row["open_orders"] >= caps.per_network and not row["known_before"]:
        raise caps.network_refusal()
    return None  # a known customer: the general path checks their caps first, under their row lock


_SETTLED_COLUMNS = (
    "status",
    "version",
    "updated_at",
    "deposit_address",
    "allocation_state",
    "address_assigned_at",
    "queue_position",
    "estimated_wait_seconds",
    "expires_at",
    "announced_at",
)
"""What step 2 writes to the order."""


async def settle_new_order(
    session: AsyncSession,
    *,
    sql: Driver,
    order: Order,
    allocation: Allocation | None,
    settings: Settings,
    protection: DataProtection,
    issued: IssuedSession,
    email: str,
    payout_address: str,
    idempotency: IdempotencyClaim | None,
) -> OrderResponse:
    """Step 2 above: store wallet-pool's answer for the order made by step 1, announce it, and answer. An
    address another open order holds (the unique index refuses it; the statement then wrote nothing) is
    dropped and the order settled without one."""
    now = utcnow()
    as_made = {name: getattr(order, name) for name in _SETTLED_COLUMNS}
    from_status = order.status
    settled = settlement(
        status=from_status, allocation=allocation, now=now, rules=settings.currencies[order.from_currency]
    )
    entry = None
    if settled is not None:
        entry = settled.entry(from_status=from_status)
        if settled.to is not None:
            order.status = settled.to.value
            order.version += 1
            order.updated_at = now
        for name, value in settled.changes.items():
            setattr(order, name, value)
    order.announced_at = now
    announced = announcement(order)
    event = announced.event(
        sealed_email=protection.sealed_event_fields(
            {"customer_email": email}, event_type=announced.event_type, aggregate_id=announced.aggregate_id
        )
    )
    response = created_response(order, payout_address=payout_address, session_token=issued.token)
    statement = SETTLE_NEW_ORDER
    try:
        row = await sql.fetchrow(
            "settle new order",
            statement.sql,
            *statement.arguments(
                **{name: getattr(order, name) for name in _SETTLED_COLUMNS},
                order_id=order.id,
                history_from_status=entry.from_status if entry else None,
                history_to_status=entry.to_status if entry else None,
                history_actor=entry.actor.label if entry else None,
                history_channel=entry.actor.channel if entry else None,
                history_details=json.dumps(entry.details) if entry else None,
                correlation_id=current_trace_id(),
                event_id=str(uuid.uuid4()),
                event_destination=announced.destination,
                event_type=event.event_type,
                event_payload=json.dumps(event.payload()),
                traceparent=current_traceparent(),
                response_status=response.status_code,
                response_sealed=(
                    protection.seal(json.dumps(response.body), context=IDEMPOTENCY_CONTEXT)
                    if idempotency
                    else None
                ),
                key_owner=idempotency.owner if idempotency else None,
                idempotency_key=idempotency.key if idempotency else None,
            ),
        )
    except asyncpg.UniqueViolationError:
        if order.deposit_address is None:  # pragma: no cover - only the deposit address is unique here
            raise
        # The unique index refused the address (another open order holds it) and the statement wrote
        # nothing: settle the order as step 1 made it, as if wallet-pool had not answered.
        log_unusable_answer(address_taken(order), order_id=order.id)
        for name, value in as_made.items():
            setattr(order, name, value)
        return await settle_new_order(
            session,
            sql=sql,
            order=order,
            allocation=None,
            settings=settings,
            protection=protection,
            issued=issued,
            email=email,
            payout_address=payout_address,
            idempotency=idempotency,
        )
    if row and row["settled"]:
        sql.wake_workers()  # the relay delivers order.created
        return response
    # Changed meanwhile (a wallet.assigned event or the sweeper got there first): apply the answer to the
    # order as it is.
    current = await settle_order(
        session, order_id=order.id, allocation=allocation, settings=settings, protection=protection
    )
    response = created_response(current, payout_address=payout_address, session_token=issued.token)
    if idempotency is not None:
        await store_idempotent_response(session, claim=idempotency, response=response, protection=protection)
    return response


# -- The general path: the ORM, in the request's session ---------------------------------------------------


async def claim_idempotency_key(
    session: AsyncSession,
    *,
    claim: IdempotencyClaim,
    order_id: str,
    settings: Settings,
    protection: DataProtection,
    full_session: CustomerPrincipal | None,
) -> OrderResponse | None:
    """Reserve the key for this request (which will write order ``order_id``), or answer as the request that
    used it did (``intake.judge_earlier_use``): its stored answer; while it may still be running, ``409``
    with ``Retry-After``; if it died after writing its order, that order (``recover_order``); if it died
    before, the key is this request's."""
    now = utcnow()
    if await reserve_idempotency_key(
        session, owner=claim.owner, key=claim.key, fingerprint=claim.fingerprint, order_id=order_id, now=now
    ):
        return None
    existing = await locked_idempotency_key(session, owner=claim.owner, key=claim.key)
    sealed, status = existing.response_sealed, existing.response_status
    use = judge_earlier_use(
        claim=claim,
        stored_fingerprint=existing.request_fingerprint,
        answered=sealed is not None and status is not None,
        created_at=existing.created_at,
        now=now,
        budget_seconds=settings.intake_budget_seconds,
    )
    if use == "replay" and sealed is not None and status is not None:
        body = json.loads(protection.open(sealed, context=IDEMPOTENCY_CONTEXT))
        return OrderResponse(status_code=status, body=body, replayed=True)
    order = (
        None
        if existing.order_id is None
        else await find_order(session, order_id=existing.order_id, for_update=True)
    )
    if order is None:  # the first request died before writing its order: the key is this request's now
        existing.order_id = order_id
        existing.created_at = now
        await session.flush()
        return None
    return await recover_order(
        session, order=order, claim=claim, settings=settings, protection=protection, full_session=full_session
    )


async def recover_order(
    session: AsyncSession,
    *,
    order: Order,
    claim: IdempotencyClaim,
    settings: Settings,
    protection: DataProtection,
    full_session: CustomerPrincipal | None,
) -> OrderResponse:
    """Finish what a request that died after writing ``order`` left undone, and answer the retry with it:
    the order is announced as it is now (if nothing announced it yet; the reconciler gets it its address),
    and, as the dead request's session token cannot be recovered (only its hash is stored), a new session for
    this order is issued. The answer is stored under the key, so later retries get the same one."""
    check_signed_in_customer(
        signed_in=full_session.customer_id if full_session else None, customer_id=order.customer_id
    )
    await announce_order(session, protection=protection, order=order)
    issued = None
    if full_session is None:
        issued = await open_order_session(
            session=session, settings=settings, customer_id=order.customer_id, order_id=order.id
        )
    response = created_response(
        order,
        payout_address=open_payout_address(order, protection=protection),
        session_token=issued.token if issued else None,
    )
    await store_idempotent_response(session, claim=claim, response=response, protection=protection)
    log.info("an unfinished order request was recovered", extra={"order_id": order.id})
    return response


async def create_for_customer(
    session: AsyncSession,
    *,
    order: Order,
    caps: OpenOrderCaps,
    settings: Settings,
    protection: DataProtection,
    email: str,
    full_session: CustomerPrincipal | None,
) -> IssuedSession | None:
    """Write ``order`` for the customer of ``email`` (created on their first order), with its first history
    row and, unless the customer is signed in, a session for it (returned). Refused when a cap is full."""
    # Locked until commit: one customer's concurrent orders queue here, so the caps cannot be raced past.
    customer = await lock_or_create_customer(
        session=session, protection=protection, email=email, locale=order.locale
    )
    check_signed_in_customer(
        signed_in=full_session.customer_id if full_session else None, customer_id=customer.id
    )
    if await holds_open_orders(
        session,
        holder=orders_of_customer(customer.id, mailbox_proven=caps.mailbox_proven, client_ip=order.client_ip),
        limit=caps.per_customer,
    ):
        raise caps.customer_refusal()
    if await holds_open_orders(session, holder=orders_of_network(order.client_ip), limit=caps.per_network):
        raise caps.network_refusal()

    order.customer_id = customer.id
    order.priority = decide_priority(
        rules=settings.priority,
        currency=order.from_currency,
        amount=order.amount,
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
    entry = opening_entry(customer_id=customer.id)
    await record_event(
        session, order=order, from_status=entry.from_status, actor=entry.actor, details=entry.details
    )
    return issued


async def commit_before_asking_wallet_pool(session: AsyncSession) -> None:
    """Commit the order (with its customer, session, history and key claim) before wallet-pool is asked
    for its address: the request's one unit of work is split here on purpose, and this is the only place.

    - From here on the order exists whatever happens to the call: wallet-pool may hand out an address and
      never answer in time, or the request may die. The reconciler (``workers.sweeper``) then finds the order
      ``awaiting_address`` and asks again, and the announce sweeper announces it; a retry with the same
      ``Idempotency-Key`` recovers it (``recover_order``).
    - The call may take the whole intake budget (``servicekit.client.deadline``, ``intake_budget_seconds``):
      holding the customer's row lock and a pooled connection through it would queue the customer's other
      requests and drain the pool while wallet-pool is slow.

    The fast path gets the same by running its first statement as a transaction by itself."""
    await session.commit()


async def store_idempotent_response(
    session: AsyncSession, *, claim: IdempotencyClaim, response: OrderResponse, protection: DataProtection
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.owner == claim.owner, IdempotencyKey.key == claim.key)
        .values(
            response_status=response.status_code,
            response_sealed=protection.seal(json.dumps(response.body), context=IDEMPOTENCY_CONTEXT),
            completed_at=utcnow(),
        )
    )
