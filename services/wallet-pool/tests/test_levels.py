"""Pool levels: a pool running short is announced to the notifier once per crossing (``pool.low``), once more
when it runs dry, and ``pool.recovered`` once it is comfortably back; never once per order."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from desk_contracts.events import EVENTS
from servicekit.db import Database
from servicekit.testing import eventually, running_app
from wallet_pool.levels.models import Level
from wallet_pool.levels.service import (
    PoolFigures,
    next_level,
    update_pool_level,
    update_queue_level,
    watch_pool_levels,
)
from wallet_pool.main import create_app
from wallet_pool.pools import Pool
from wallet_pool.testing import PoolApi, RunningApp, make_settings

BTC = Pool("BTC", "bitcoin")


def figures(free: int, usable: int = 20) -> PoolFigures:
    return PoolFigures(total=usable, free=free, reserved=usable - free, disabled=0, queued=0)


@pytest.mark.parametrize(
    ("current", "free", "expected"),
    [
        (Level.OK, 3, Level.OK),  # 15 %: fine
        (Level.OK, 2, Level.OK),  # 10 %: at the threshold is not below it
        (Level.OK, 1, Level.LOW),  # 5 %
        (Level.OK, 0, Level.EMPTY),  # straight to empty
        (Level.LOW, 0, Level.EMPTY),  # worsening
        (Level.LOW, 2, Level.LOW),  # back at 10 %, but not at threshold + margin
        (Level.LOW, 3, Level.OK),  # 15 %: recovered
        (Level.EMPTY, 1, Level.EMPTY),  # one wallet back is not news either way
        (Level.EMPTY, 3, Level.OK),
    ],
)
def test_levels_move_with_hysteresis(current: Level, free: int, expected: Level) -> None:
    level = next_level(current=current, figures=figures(free), threshold=Decimal(10), margin=Decimal(5))
    assert level is expected


def test_disabled_wallets_do_not_count_as_stock() -> None:
    all_disabled = PoolFigures(total=10, free=0, reserved=0, disabled=10, queued=0)
    assert all_disabled.free_percent == Decimal("0.00")
    half_disabled = PoolFigures(total=20, free=1, reserved=9, disabled=10, queued=0)
    assert half_disabled.free_percent == Decimal("10.00")


async def pool_events(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    rows = await session.execute(
        text("SELECT event_type, payload FROM outbox WHERE event_type LIKE 'pool.%' ORDER BY created_at, id")
    )
    return [(row.event_type, row.payload) for row in rows]


async def test_draining_and_refilling_a_pool_announces_each_crossing_once(
    api: PoolApi, session: AsyncSession, pool_app: RunningApp
) -> None:
    await api.stock("BTC", 20)
    await api.stock("ETH", 2)

    async def look() -> str | None:
        return await update_pool_level(session, pool=BTC, settings=pool_app.settings)

    announced: list[str | None] = []
    for n in range(20):
        assert (await api.allocate(f"order-{n}")).status_code == 201
        announced.append(await look())
    # 19 taken leaves 1 of 20 (5 %): low; the 20th leaves none: empty; nothing else.
    assert announced[:18] == [None] * 18
    assert announced[18:] == ["pool.low", "pool.low"]
    assert await look() is None

    events = await pool_events(session)
    assert [(kind, payload["level"], payload["free"]) for kind, payload in events] == [
        ("pool.low", "low", 1),
        ("pool.low", "empty", 0),
    ]
    low = events[0][1]
    assert low == {
        "currency": "BTC",
        "network": "bitcoin",
        "free": 1,
        "total": 20,
        "reserved": 19,
        "disabled": 0,
        "queued": 0,
        "free_percent": "5.00",
        "threshold_percent": "10",
        "level": "low",
        "observed_at": low["observed_at"],
    }

    # Back to 1, then 2 free (10 %): still short of threshold + margin, so still quiet; 3 free (15 %): recovered.
    for n, expected in ((0, None), (1, None), (2, "pool.recovered")):
        assert (await api.release(f"order-{n}")).status_code == 200
        assert await look() == expected
    recovered = (await pool_events(session))[-1]
    assert recovered[0] == "pool.recovered"
    assert (recovered[1]["level"], recovered[1]["free"], recovered[1]["free_percent"]) == ("ok", 3, "15.00")
    assert len(await pool_events(session)) == 3  # the ETH pool, untouched, said nothing
    for kind, payload in await pool_events(session):  # read back by the notifier's model, to the letter
        assert EVENTS[kind].model_validate(payload).payload() == payload


async def test_replicas_watching_together_announce_a_crossing_once(
    race_database: Database, race_database_url: str
) -> None:
    """The app's own watcher (every 50 ms) and eight extra passes race over the same crossing on PostgreSQL."""
    settings = make_settings(race_database_url, pool_watch_seconds=0.05)
    app = create_app(settings)
    async with running_app(app) as client:
        api = PoolApi(client)
        await api.stock("USDT", 10, network="TRC20")
        for n in range(10):
            response = await api.allocate(f"order-{n}", "USDT", network="TRC20")
            assert response.status_code == 201, response.text
        await asyncio.gather(
            *(watch_pool_levels(database=race_database, settings=settings) for _ in range(8))
        )

        async def events() -> list[tuple[str, dict[str, Any]]]:
            async with race_database.sessionmaker() as session:
                return await pool_events(session)

        drained = await events()
        assert [(kind, payload["level"]) for kind, payload in drained] == [("pool.low", "empty")]

        for n in range(5):
            assert (await api.release(f"order-{n}")).status_code == 200
        settled = await eventually(events, until=lambda found: len(found) == 2, within=10)
        assert [(kind, payload["level"]) for kind, payload in settled] == [
            ("pool.low", "empty"),
            ("pool.recovered", "ok"),
        ]
        recovered = settled[1][1]
        # Announced at the first look at 15 % (threshold 10 + margin 5) or more: 2 of 10 free, or later.
        assert recovered["network"] == "TRC20"
        assert recovered["free"] >= 2
        assert Decimal(recovered["free_percent"]) >= 15


# --- the wait queue: queue.backlogged / queue.cleared ---------------------------------------------------------


async def queue_events(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    rows = await session.execute(
        text("SELECT event_type, payload FROM outbox WHERE event_type LIKE 'queue.%' ORDER BY created_at, id")
    )
    return [(row.event_type, row.payload) for row in rows]


async def test_a_long_then_slow_queue_is_announced_once_per_crossing_and_cleared_with_a_margin(
    api: PoolApi, session: AsyncSession, pool_app: RunningApp
) -> None:
    settings = pool_app.settings.model_copy(
        update={"queue_alert_length": 4, "queue_alert_wait_minutes": 15, "queue_alert_clear_percent": 40}
    )
    await session.execute(text("DELETE FROM wait_queue_entry WHERE currency = 'BTC'"))  # only this test's
    await api.stock("BTC", 1)

    async def look() -> str | None:
        return await update_queue_level(session, pool=BTC, settings=settings)

    looks = []
    for n in range(5):  # the first takes the one wallet; the others queue: 1, 2, 3, 4 waiting
        assert (await api.allocate(f"order-{n}")).status_code in (201, 202)
        looks.append(await look())
    assert looks == [None, None, None, None, "queue.backlogged"]
    assert await look() is None  # once per crossing

    await session.execute(
        text("UPDATE wait_queue_entry SET enqueued_at = enqueued_at - interval '20 minutes'")
    )
    assert await look() == "queue.backlogged"  # a further threshold crossed: told once more
    assert await look() is None

    # Release orders from the front of the queue: 3 left (below 4, above 40 % of it) with the oldest still
    # waiting 20 min, then 2 waiting but freshly: still not clear; 1 fresh: clear.
    assert (await api.release("order-1")).status_code == 200
    assert await look() is None
    await session.execute(text("UPDATE wait_queue_entry SET enqueued_at = now()"))
    assert (await api.release("order-2")).status_code == 200
    assert await look() is None
    assert (await api.release("order-3")).status_code == 200
    assert await look() == "queue.cleared"
    assert await look() is None

    events = await queue_events(session)
    assert [(kind, payload.get("reasons"), payload["queued"]) for kind, payload in events] == [
        ("queue.backlogged", ["length"], 4),
        ("queue.backlogged", ["length", "wait"], 4),
        ("queue.cleared", None, 1),
    ]
    assert events[1][1]["oldest_wait_seconds"] >= 20 * 60
    assert (events[1][1]["length_threshold"], events[1][1]["wait_threshold_seconds"]) == (4, 900)
    for kind, payload in events:  # read back by the notifier's model, to the letter
        assert EVENTS[kind].model_validate(payload).payload() == payload


async def test_a_backlog_in_a_pool_without_wallets_is_cleared_once_its_queue_empties(
    race_database: Database, race_database_url: str
) -> None:
    """A pool nobody stocked queues every order; once they are gone it has neither wallets nor a queue, and the
    watch still looks at it, so its alert is cleared rather than left to escalate."""
    settings = make_settings(race_database_url, pool_watch_seconds=3600, queue_alert_length=2)
    async with running_app(create_app(settings)) as client:
        api = PoolApi(client)
        for n in range(2):  # no ETH wallet at all: both queue
            assert (await api.allocate(f"eth-{n}", "ETH")).status_code == 202
        await watch_pool_levels(database=race_database, settings=settings)
        for n in range(2):
            assert (await api.release(f"eth-{n}")).status_code == 200
        await watch_pool_levels(database=race_database, settings=settings)
        async with race_database.sessionmaker() as session:
            told = [kind for kind, _ in await queue_events(session)]
    assert told == ["queue.backlogged", "queue.cleared"]


async def test_queue_alerts_are_off_at_zero_thresholds(
    api: PoolApi, session: AsyncSession, pool_app: RunningApp
) -> None:
    settings = pool_app.settings.model_copy(update={"queue_alert_length": 0, "queue_alert_wait_minutes": 0})
    for n in range(3):  # no wallet at all: every order queues
        assert (await api.allocate(f"order-{n}")).status_code in (201, 202)
    await session.execute(text("UPDATE wait_queue_entry SET enqueued_at = enqueued_at - interval '1 day'"))
    assert await update_queue_level(session, pool=BTC, settings=settings) is None
