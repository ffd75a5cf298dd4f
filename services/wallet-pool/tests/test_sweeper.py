"""The queue sweeper: a wallet resting after release goes to the head of the queue once its cool-down has
passed, with nobody releasing anything then (real commits, the worker started by the app's lifespan)."""

from __future__ import annotations

from sqlalchemy import text

from servicekit.db import Database, utcnow
from servicekit.testing import eventually, running_app
from wallet_pool.main import create_app
from wallet_pool.testing import PoolApi, assert_pool_invariants, make_settings


async def test_a_rested_wallet_reaches_the_head_of_the_queue(
    race_database: Database, race_database_url: str
) -> None:
    settings = make_settings(
        race_database_url,
        reuse_cooldown_seconds={"BTC": 1},
        queue_sweep_seconds=0.1,
        metrics_refresh_seconds=0.1,
    )
    app = create_app(settings)
    async with running_app(app) as client:
        api = PoolApi(client)
        await api.stock("BTC", 1)
        address = (await api.allocate("holder")).json()["address"]
        await api.allocate("first")
        released = (await api.release("holder")).json()
        assert released["handed_to_order_id"] is None  # resting for a second
        assert (await api.allocate("second")).json()["position"] == 2  # and not taken by a newcomer
        assert (await api.allocation("first")).json()["status"] == "queued"

        async def first() -> dict[str, object]:
            return dict((await api.allocation("first")).json())

        assigned = await eventually(first, until=lambda body: body["status"] == "allocated", within=10)
        assert assigned["address"] == address
        assert (await api.allocation("second")).json()["position"] == 1

        async def gauges() -> str:
            return (await client.get("/metrics")).text

        await eventually(
            gauges,
            until=lambda page: 'wallet_pool_queue_length{currency="BTC",network="bitcoin"} 1.0' in page,
        )

    async with race_database.sessionmaker() as session:
        await assert_pool_invariants(session, resting_since=utcnow())
        event = (await session.execute(text("SELECT aggregate_id, payload FROM outbox"))).one()
        assert event.aggregate_id == "first"
        assert event.payload["address"] == address
