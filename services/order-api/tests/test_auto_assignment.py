"""Auto-assignment (``ORDER_API_AUTO_ASSIGN``) on PostgreSQL: who gets a takeable order (fewest held, ties
by idle time; away, deactivated, support and capped operators skipped), the record it leaves (event, history,
audit, the order's detail), accepting it, the worker lapsing an untouched one back to the pool without
handing it to the same operator again, and the race with takes across two replicas."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import demo_address
from order_api.audit.models import AuditLog
from order_api.context import context_of
from order_api.db import outbox
from order_api.operators import assignment, repository
from order_api.operators.assignment import Candidate, pick_assignee
from order_api.operators.models import Operator, OrderAssignment
from order_api.operators.repository import AUTO_ASSIGN_ACTOR
from order_api.orders.models import Order, OrderEvent
from order_api.orders.repository import untouched_orders
from order_api.orders.untouched import report_untouched_orders
from order_api.testing import ApiKeys, OrderApi, OrderApiRunner, hire, order_body, wallet_assigned
from order_api.workers.sweeper import auto_assign_orders
from servicekit.db import Database, utcnow
from servicekit.state import service_state
from servicekit.testing import eventually, metric_samples

T0 = utcnow()


def admin(api_keys: ApiKeys) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys.admin}"}


def auth(staff: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {staff['token']}"}


async def takeable_order(api: OrderApi, api_keys: ApiKeys) -> str:
    """A BTC order (wallet-pool unreachable: ``awaiting_address``) given its address by ``wallet.assigned``."""
    created = await api.client.post("/v1/orders", json=order_body())
    assert created.status_code == 201, created.text
    order_id: str = created.json()["id"]
    address = demo_address(currency="BTC", network="bitcoin", seed=uuid.uuid4().int % 10**9)
    answer = await api.client.post(
        "/v1/events",
        json=wallet_assigned(order_id, address),
        headers={"Authorization": f"Bearer {api_keys.wallet_pool}"},
    )
    assert answer.json()["status"] == "processed", answer.text
    return order_id


def test_the_fewest_held_wins_then_the_longest_idle_and_a_capped_operator_never() -> None:
    def candidate(name: str, held: int, idle_minutes: int, cap: int = 5) -> Candidate:
        return Candidate(
            operator_id=name, held=held, cap=cap, idle_since=T0 - timedelta(minutes=idle_minutes)
        )

    assert pick_assignee([candidate("anna", 2, 60), candidate("boris", 1, 1)]) == "boris"
    assert pick_assignee([candidate("anna", 1, 5), candidate("boris", 1, 30)]) == "boris"
    assert pick_assignee([candidate("anna", 3, 90, cap=3), candidate("boris", 4, 1)]) == "boris"
    assert pick_assignee([candidate("anna", 3, 90, cap=3)]) is None
    assert pick_assignee([]) is None
    assert assignment.SYSTEM_AUTO_ASSIGN.label == AUTO_ASSIGN_ACTOR  # what the repository's SQL looks for


async def test_an_order_goes_to_the_least_loaded_available_operator_then_the_longest_idle(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    settings = api.settings.model_copy(update={"operator_max_held_orders": 2})
    anna, boris = await hire(api, api_keys), await hire(api, api_keys)
    carl = await hire(api, api_keys, telegram_user_id=4242)
    dora, eve = await hire(api, api_keys), await hire(api, api_keys)  # away; deactivated
    await hire(api, api_keys, role="support")  # answers escalations, holds no orders
    await api.client.put("/v1/operator/presence", json={"status": "away"}, headers=auth(dora))
    deactivated = await api.client.patch(
        f"/v1/admin/operators/{eve['id']}", json={"active": False}, headers=admin(api_keys)
    )
    assert deactivated.status_code == 200, deactivated.text
    taken = await takeable_order(api, api_keys)
    assert (await api.client.post(f"/v1/operator/orders/{taken}/take", headers=auth(anna))).is_success
    for status in ("away", "available"):  # carl is back at the desk just now: boris has been idle longer
        await api.client.put("/v1/operator/presence", json={"status": status}, headers=auth(carl))

    async def assign() -> str | None:
        order_id = await takeable_order(api, api_keys)
        assigned = await assignment.auto_assign(
            db_session, settings=settings, protection=context_of(api.app).protection, order_id=order_id
        )
        held_by = await db_session.scalar(select(Order.operator_id).where(Order.id == order_id))
        assert assigned is (held_by is not None)
        return held_by

    # boris and carl hold none: boris has been idle longer, then carl; then all hold one, and anna's last step
    # (her take) is the oldest; anna is at the cap of 2, so boris and carl again, and then the order stays
    # takeable
    assert [await assign() for _ in range(6)] == [
        boris["id"],
        carl["id"],
        anna["id"],
        boris["id"],
        carl["id"],
        None,
    ]


async def test_the_assignment_is_an_event_in_history_and_audit_shown_on_the_order_and_accepted(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna = await hire(api, api_keys, telegram_user_id=5151)
    boris = await hire(api, api_keys)
    await api.client.put("/v1/operator/presence", json={"status": "away"}, headers=auth(boris))
    order_id = await takeable_order(api, api_keys)
    before = utcnow()
    ctx = context_of(api.app)
    assert await assignment.auto_assign(
        db_session, settings=ctx.settings, protection=ctx.protection, order_id=order_id
    )

    [event] = (
        await db_session.execute(
            select(outbox.c.payload).where(
                outbox.c.event_type == "order.assigned", outbox.c.aggregate_id == order_id
            )
        )
    ).scalars()
    assert (event["status"], event["operator_id"], event["operator_name"]) == (
        "in_progress",
        anna["id"],
        anna["name"],
    )
    assert (event["actor"], event["operator_telegram_user_id"]) == ("system:auto-assign", 5151)
    step = await db_session.scalar(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id.desc()).limit(1)
    )
    assert step is not None
    assert (step.from_status, step.to_status, step.actor) == (
        "awaiting_deposit",
        "in_progress",
        "system:auto-assign",
    )
    [audit] = (await db_session.execute(select(AuditLog).filter_by(action="order.assigned"))).scalars()
    assert (audit.target_id, audit.actor) == (order_id, "system:auto-assign")

    detail = (await api.client.get(f"/v1/operator/orders/{order_id}", headers=auth(anna))).json()
    assert (detail["operator_id"], detail["assignment"]["outcome"]) == (anna["id"], "pending")
    lapses_at = datetime.fromisoformat(detail["assignment"]["lapses_at"])
    assert before + timedelta(seconds=299) < lapses_at <= utcnow() + timedelta(seconds=300)

    refused = await api.client.post(f"/v1/operator/orders/{order_id}/accept", headers=auth(boris))
    assert (refused.status_code, refused.json()["code"]) == (409, "order_not_held")
    accepted = await api.client.post(f"/v1/operator/orders/{order_id}/accept", headers=auth(anna))
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["assignment"]["outcome"] == "accepted"
    again = await api.client.post(f"/v1/operator/orders/{order_id}/accept", headers=auth(anna))
    assert again.json()["assignment"]["outcome"] == "accepted"
    accepts = (await db_session.execute(select(AuditLog).filter_by(action="order.assignment_accepted"))).all()
    assert len(accepts) == 1


async def test_an_assigned_order_not_accepted_yet_counts_as_untouched(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna = await hire(api, api_keys)
    ctx = context_of(api.app)
    settings = ctx.settings.model_copy(update={"untouched_order_alert_minutes": 30})
    order_id = await takeable_order(api, api_keys)
    assert await assignment.auto_assign(
        db_session, settings=settings, protection=ctx.protection, order_id=order_id
    )
    long_ago = utcnow() - timedelta(minutes=31)
    await db_session.execute(update(Order).where(Order.id == order_id).values(address_assigned_at=long_ago))

    assert await untouched_orders(db_session) == (1, long_ago)  # the orders_untouched* gauges
    assert await report_untouched_orders(db_session, settings=settings) == "orders.untouched"
    assert (await api.client.post(f"/v1/operator/orders/{order_id}/accept", headers=auth(anna))).is_success
    assert await untouched_orders(db_session) == (0, None)
    assert await report_untouched_orders(db_session, settings=settings) == "orders.untouched_cleared"


async def test_an_order_only_operators_at_their_cap_could_get_is_not_in_the_batch(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna = await hire(api, api_keys)
    held = await takeable_order(api, api_keys)
    assert (await api.client.post(f"/v1/operator/orders/{held}/take", headers=auth(anna))).is_success
    waiting = await takeable_order(api, api_keys)

    at_cap = api.settings.model_copy(update={"operator_max_held_orders": 1})
    room = api.settings.model_copy(update={"operator_max_held_orders": 2})
    assert await assignment.orders_to_assign(db_session, settings=at_cap) == []
    assert await assignment.orders_to_assign(db_session, settings=room) == [waiting]


async def test_an_assignment_acted_on_is_accepted_and_one_taken_away_has_ended(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    anna, boris = await hire(api, api_keys), await hire(api, api_keys)
    ctx = context_of(api.app)
    cancelled, deactivated = await takeable_order(api, api_keys), await takeable_order(api, api_keys)
    for order_id in (cancelled, deactivated):  # anna, idle longer, then boris
        assert await assignment.auto_assign(
            db_session, settings=ctx.settings, protection=ctx.protection, order_id=order_id
        )
    cancel = await api.client.post(
        f"/v1/operator/orders/{cancelled}/status", json={"status": "cancelled"}, headers=auth(anna)
    )
    assert cancel.status_code == 200, cancel.text
    away = await api.client.patch(
        f"/v1/admin/operators/{boris['id']}", json={"active": False}, headers=admin(api_keys)
    )
    assert away.status_code == 200, away.text
    await db_session.execute(update(OrderAssignment).values(lapses_at=utcnow() - timedelta(seconds=1)))

    lapsed = await assignment.lapse_untouched_assignments(
        db_session, settings=ctx.settings, protection=ctx.protection
    )
    outcomes = dict(
        (await db_session.execute(select(OrderAssignment.operator_id, OrderAssignment.outcome)))
        .tuples()
        .all()
    )
    assert lapsed == 0
    assert outcomes == {anna["id"]: "accepted", boris["id"]: "ended"}


async def lapse_now(database: Database) -> None:
    """The clock moved past every pending assignment's ``lapses_at``."""
    async with database.sessionmaker.begin() as session:
        await session.execute(
            update(OrderAssignment)
            .where(OrderAssignment.outcome.is_(None))
            .values(lapses_at=utcnow() - timedelta(seconds=1))
        )


async def test_an_untouched_assignment_lapses_to_the_pool_and_never_back_to_the_same_operator(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with order_api(
        database_url=own_database_url, sweep_seconds=0.1, auto_assign=True, auto_assign_timeout_seconds=300
    ) as api:
        anna = await hire(api, api_keys, telegram_user_id=6161)
        boris = await hire(api, api_keys)
        database: Database = service_state(api.app).runtime.database

        async def holder(order_id: str) -> str | None:
            async with database.sessionmaker() as session:
                return await session.scalar(select(Order.operator_id).where(Order.id == order_id))

        order_id = await takeable_order(api, api_keys)
        first = await eventually(lambda: holder(order_id), until=bool, message="auto-assigned")
        await lapse_now(database)
        second = await eventually(
            lambda: holder(order_id), until=lambda h: h not in (None, first), message="to the other one"
        )
        await lapse_now(database)
        await eventually(lambda: holder(order_id), until=lambda h: h is None, message="back in the pool")
        ctx = context_of(api.app)
        async with database.sessionmaker.begin() as session:  # nobody who had it gets it again
            assert not await assignment.auto_assign(
                session, settings=ctx.settings, protection=ctx.protection, order_id=order_id
            )
            # nor keeps newer ones waiting
            assert order_id not in await assignment.orders_to_assign(session, settings=ctx.settings)
        assert await holder(order_id) is None
        takeable = (await api.client.get("/v1/operator/orders", headers=auth(anna))).json()["items"]

        kept = await takeable_order(api, api_keys)  # accepted in time: it stays
        keeper_id = await eventually(lambda: holder(kept), until=bool, message="auto-assigned")
        keeper = anna if keeper_id == anna["id"] else boris
        assert (await api.client.post(f"/v1/operator/orders/{kept}/accept", headers=auth(keeper))).is_success
        await lapse_now(database)
        async with database.sessionmaker.begin() as session:
            assert (
                await assignment.lapse_untouched_assignments(
                    session, settings=ctx.settings, protection=ctx.protection
                )
                == 0
            )
        assert await holder(kept) == keeper["id"]

        scraped = metric_samples((await api.client.get("/metrics")).text)
        idler = boris if keeper is anna else anna  # only ever let orders lapse
        stats = (await api.client.get("/v1/operator/stats", headers=auth(idler))).json()
        detail = (await api.client.get(f"/v1/operator/orders/{order_id}", headers=auth(anna))).json()
        async with database.sessionmaker() as session:
            lapsed = list(
                (
                    await session.execute(
                        select(outbox.c.payload)
                        .where(outbox.c.event_type == "order.assignment_lapsed")
                        .order_by(outbox.c.created_at)
                    )
                ).scalars()
            )
            audits = await session.scalar(
                select(func.count()).select_from(AuditLog).filter_by(action="order.assignment_lapsed")
            )

    assert {first, second} == {anna["id"], boris["id"]}
    assert [o["id"] for o in takeable] == [order_id]
    assert [(e["order_id"], e["previous_operator_id"], e["status"]) for e in lapsed] == [
        (order_id, first, "awaiting_deposit"),
        (order_id, second, "awaiting_deposit"),
    ]
    assert lapsed[0]["comment"] == "Not accepted within 5 minutes."
    told = {e["previous_operator_id"]: e["previous_operator_telegram_user_id"] for e in lapsed}
    assert told[anna["id"]] == 6161
    assert audits == 2
    assert (detail["assignment"]["operator_id"], detail["assignment"]["outcome"]) == (second, "lapsed")
    assert (
        scraped["order_take_seconds_count"] == 2
    )  # each order's first assignment, as /v1/stats/orders counts
    # a lapsed assignment is not a take: the operator who only let orders lapse processed nothing, holds nothing
    assert (stats["mine"]["processed"], stats["mine"]["open_orders"]) == (0, 0)


async def test_an_assignment_accepted_just_before_the_lapse_locked_its_order_is_not_lapsed(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with order_api(database_url=own_database_url) as api:
        ctx = context_of(api.app)
        anna = await hire(api, api_keys)
        order_id = await takeable_order(api, api_keys)
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker.begin() as session:
            assert await assignment.auto_assign(
                session, settings=ctx.settings, protection=ctx.protection, order_id=order_id
            )
        await lapse_now(database)

        async def accepted_meanwhile(session: AsyncSession, *, now: datetime, limit: int) -> Any:
            """The lapse's select judged on its snapshot, then the accept committed, then the lock came."""
            judged = (
                await session.execute(
                    select(OrderAssignment, Order)
                    .join(Order, Order.id == OrderAssignment.order_id)
                    .where(OrderAssignment.outcome.is_(None), OrderAssignment.lapses_at <= now)
                )
            ).all()
            accepted = await api.client.post(f"/v1/operator/orders/{order_id}/accept", headers=auth(anna))
            assert accepted.status_code == 200, accepted.text
            await session.execute(select(Order.id).where(Order.id == order_id).with_for_update())
            return judged

        monkeypatch.setattr(repository, "lapsed_assignments", accepted_meanwhile)
        async with database.sessionmaker.begin() as session:
            lapsed = await assignment.lapse_untouched_assignments(
                session, settings=ctx.settings, protection=ctx.protection
            )
        async with database.sessionmaker() as session:
            after = (
                await session.execute(
                    select(Order.operator_id, OrderAssignment.outcome).join(
                        OrderAssignment, OrderAssignment.order_id == Order.id
                    )
                )
            ).one()
    assert lapsed == 0
    assert tuple(after) == (anna["id"], "accepted")


async def test_switched_off_it_assigns_nothing_and_what_it_assigned_still_lapses(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with order_api(database_url=own_database_url) as api:  # ORDER_API_AUTO_ASSIGN off, the default
        ctx = context_of(api.app)
        await hire(api, api_keys)
        assigned, waiting = await takeable_order(api, api_keys), await takeable_order(api, api_keys)
        database: Database = service_state(api.app).runtime.database
        async with database.sessionmaker.begin() as session:  # assigned while it was on
            assert await assignment.auto_assign(
                session, settings=ctx.settings, protection=ctx.protection, order_id=assigned
            )
        await lapse_now(database)

        assert (
            await auto_assign_orders(database=database, settings=ctx.settings, protection=ctx.protection) == 0
        )
        async with database.sessionmaker() as session:
            holders = dict(
                (
                    await session.execute(
                        select(Order.id, Order.operator_id).where(Order.id.in_([assigned, waiting]))
                    )
                )
                .tuples()
                .all()
            )
    assert holders == {assigned: None, waiting: None}


async def test_auto_assignment_races_takes_across_two_replicas_with_one_holder_per_order(
    order_api: OrderApiRunner, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with order_api(database_url=own_database_url, operator_max_held_orders=3) as api:
        ctx = context_of(api.app)
        settings = ctx.settings.model_copy(update={"auto_assign": True})
        anna, boris, carl = [await hire(api, api_keys) for _ in range(3)]
        orders = [await takeable_order(api, api_keys) for _ in range(8)]
        database: Database = service_state(api.app).runtime.database

        def replica() -> Any:
            return auto_assign_orders(database=database, settings=settings, protection=ctx.protection)

        takes = [
            api.client.post(f"/v1/operator/orders/{order_id}/take", headers=auth(staff))
            for order_id in orders
            for staff in (anna, boris)
        ]
        results = await asyncio.gather(replica(), *takes, replica())
        async with database.sessionmaker() as session:
            holders = dict(
                (await session.execute(select(Order.id, Order.operator_id).where(Order.id.in_(orders))))
                .tuples()
                .all()
            )
            handed = Counter(
                (
                    await session.execute(
                        select(OrderEvent.order_id).where(
                            OrderEvent.order_id.in_(orders), OrderEvent.to_status == "in_progress"
                        )
                    )
                ).scalars()
            )
            announced = Counter(
                (
                    await session.execute(
                        select(outbox.c.aggregate_id).where(
                            outbox.c.event_type.in_(("order.taken", "order.assigned")),
                            outbox.c.aggregate_id.in_(orders),
                        )
                    )
                ).scalars()
            )
            names = dict((await session.execute(select(Operator.id, Operator.name))).tuples().all())
            assigned = await session.scalar(
                select(func.count())
                .select_from(OrderEvent)
                .where(OrderEvent.order_id.in_(orders), OrderEvent.actor == "system:auto-assign")
            )

    assert {r.status_code for r in results[1:-1]} <= {200, 409}
    load = Counter(holders.values())
    assert None not in load  # 8 orders, 3 operators with room for 9: every one was handed to somebody
    assert max(load.values()) <= 3, {names.get(who or ""): held for who, held in load.items()}
    assert load[carl["id"]] >= 2  # anna and boris took up to their cap; the rest went to carl
    assert handed == Counter(orders) == announced  # exactly one take or assignment per order, never both
    assert results[0] + results[-1] == assigned
