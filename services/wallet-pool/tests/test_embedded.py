"""The embedded default: the same code on a SQLite file (one process, SQLite's single writer)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from sqlalchemy import select, text

from servicekit.db import resolve_database_url
from servicekit.migrations import upgrade
from servicekit.state import service_state
from servicekit.testing import running_app, service_dir
from wallet_pool.context import context_of
from wallet_pool.db import outbox
from wallet_pool.levels.service import watch_pool_levels
from wallet_pool.main import create_app
from wallet_pool.testing import PoolApi, assert_pool_invariants, make_settings


async def test_allocate_queue_release_and_hand_over_on_sqlite(tmp_path: Path) -> None:
    url = resolve_database_url(None, var_dir=tmp_path, service_name="wallet-pool")
    assert url.startswith("sqlite+aiosqlite:///")
    await asyncio.to_thread(upgrade, service_dir("wallet-pool"), url=url)
    app = create_app(make_settings(None, var_dir=tmp_path))
    runtime = service_state(app).runtime
    assert runtime.database.engine.dialect.name == "sqlite"

    async with running_app(app) as client:
        api = PoolApi(client)
        await api.stock("BTC", 2)
        assert (await api.allocate("a")).status_code == 201
        assert (await api.allocate("b")).status_code == 201
        assert (await api.allocate("c")).json()["position"] == 1
        assert (await api.allocate("d", priority="vip")).json()["position"] == 1
        assert (await api.allocation("c")).json()["position"] == 2
        address = (await api.allocation("a")).json()["address"]

        released = (await api.release("a")).json()
        assert (released["address"], released["handed_to_order_id"]) == (address, "d")
        assigned = (await api.allocation("d")).json()
        assert (assigned["status"], assigned["address"]) == ("allocated", address)
        assert (await api.allocate("a")).json()["code"] == "allocation_closed"
        assert (await api.release("never-seen")).status_code == 200

        # Many requests at once: SQLite serialises the writers, the same invariants hold.
        await api.stock("BTC", 3, start=10)  # c gets one at once
        answers = await asyncio.gather(*(api.allocate(f"s-{i:02}") for i in range(20)))
        assert Counter(r.status_code for r in answers) == {201: 2, 202: 18}
        releases = await asyncio.gather(*(api.release(order) for order in ("b", "c", "d", "s-03", "s-07")))
        assert {r.status_code for r in releases} == {200}
        stats = (await api.stats()).json()["currencies"][0]
        assert (stats["total"], stats["reserved"], stats["queue_length"]) == (
            5,
            5,
            18 - 5,
        )  # every release took one order out of the queue
        assert stats["average_wait_seconds"] is not None
        # Queue analytics read the same rows on SQLite: c, d and 18 of s-* entered the queue; 13 still wait, the
        # other 7 were handed an address or (a released s-* that was still waiting) left without one.
        queue = (await api.queue_stats(tz="Europe/Berlin")).json()["currencies"][0]
        left = queue["abandonment"]
        assert (left["queued"], left["still_waiting"], left["handed_over"] + left["abandoned"]) == (20, 13, 7)
        assert queue["wait"]["handed_over"] == left["handed_over"]
        assert queue["capacity"]["method"] == "erlang_c"

        async with runtime.database.sessionmaker() as session:
            await assert_pool_invariants(session)
            events = await session.execute(
                text(
                    "SELECT aggregate_id FROM outbox WHERE event_type = 'wallet.assigned' ORDER BY created_at"
                )
            )
            assert events.scalars().all()[:2] == ["d", "c"]

        # The pool level watch works on SQLite too: the drained BTC pool is announced once.
        await watch_pool_levels(database=runtime.database, settings=context_of(app).settings)
        await watch_pool_levels(database=runtime.database, settings=context_of(app).settings)
        async with runtime.database.sessionmaker() as session:
            levels = await session.execute(
                select(outbox.c.payload)
                .where(outbox.c.event_type == "pool.low")
                .order_by(outbox.c.created_at)
            )
            assert [(p["currency"], p["level"]) for p in levels.scalars()] == [("BTC", "empty")]
