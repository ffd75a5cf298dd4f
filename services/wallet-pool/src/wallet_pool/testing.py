"""Test helpers for wallet-pool (like ``servicekit.testing``): keys, settings, the HTTP API as a test calls it,
valid addresses, and the invariants that must hold after any interleaving of requests (checked in SQL). The
fixtures that hand these out are in ``services/wallet-pool/tests/conftest.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI
from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import default_network, demo_address
from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.db import UtcDateTime
from servicekit.testing import free_port
from wallet_pool.settings import Settings

HOUR = timedelta(hours=1)
ALL_SCOPES = [
    "wallets:write",
    "wallets:read",
    "allocations:write",
    "allocations:read",
    "pool:read",
    "outbox:admin",
]


@dataclass(frozen=True)
class Keys:
    admin: str = field(default_factory=lambda: mint_key("adm"))
    reader: str = field(default_factory=lambda: mint_key("ro"))

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="admin", hash=hash_key(self.admin), scopes=ALL_SCOPES),
            ApiKeyEntry(
                name="reader",
                hash=hash_key(self.reader),
                scopes=["wallets:read", "allocations:read", "pool:read"],
            ),
        ]


KEYS = Keys()


def addresses(currency: str, network: str, count: int, *, start: int = 1) -> list[str]:
    """Valid, distinct demo addresses of one pool."""
    return [
        demo_address(currency=currency, network=network, seed=seed) for seed in range(start, start + count)
    ]


def make_settings(database_url: str | None, **overrides: Any) -> Settings:
    """Settings for a test app: its own keys, order-api on a port where nothing listens, quiet logs."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_keys": KEYS.entries(),
        "order_api": {"url": f"http://127.0.0.1:{free_port()}"},
        "notifier": {"url": f"http://127.0.0.1:{free_port()}"},
        "trace_database": False,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**values)


class PoolApi:
    """wallet-pool's HTTP API, as a test calls it (with the admin key unless told otherwise)."""

    def __init__(
        self, client: httpx.AsyncClient, *, app: FastAPI | None = None, key: str = KEYS.admin
    ) -> None:
        self.client = client
        self.app = app
        self.headers = {"Authorization": f"Bearer {key}"}

    async def import_wallets(
        self, currency: str, lines: list[str], *, network: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"currency": currency, "addresses": lines}
        if network is not None:
            body["network"] = network
        return await self.client.post("/v1/wallets", json=body, headers=self.headers)

    async def list_wallets(self, **params: Any) -> httpx.Response:
        return await self.client.get("/v1/wallets", params=params, headers=self.headers)

    async def disable(self, wallet_id: int) -> httpx.Response:
        return await self.client.post(f"/v1/wallets/{wallet_id}/disable", headers=self.headers)

    async def enable(self, wallet_id: int) -> httpx.Response:
        return await self.client.post(f"/v1/wallets/{wallet_id}/enable", headers=self.headers)

    async def allocate(
        self, order_id: str, currency: str = "BTC", *, priority: str = "normal", network: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"order_id": order_id, "currency": currency, "priority": priority}
        if network is not None:
            body["network"] = network
        return await self.client.post("/v1/allocations", json=body, headers=self.headers)

    async def allocation(self, order_id: str) -> httpx.Response:
        return await self.client.get(f"/v1/allocations/{order_id}", headers=self.headers)

    async def release(self, order_id: str) -> httpx.Response:
        return await self.client.post(f"/v1/allocations/{order_id}/release", headers=self.headers)

    async def stats(self) -> httpx.Response:
        return await self.client.get("/v1/stats", headers=self.headers)

    async def queue_stats(self, *, accept: str | None = None, **params: Any) -> httpx.Response:
        headers = self.headers if accept is None else {**self.headers, "Accept": accept}
        return await self.client.get("/v1/stats/queue", params=params, headers=headers)

    async def stock(
        self, currency: str, count: int, *, network: str | None = None, start: int = 1
    ) -> list[int]:
        """Import ``count`` valid wallets; returns their ids in import order."""
        lines = addresses(currency, network or default_network(currency), count, start=start)
        response = await self.import_wallets(currency, lines, network=network)
        assert response.status_code == 201, response.text
        return [int(w["id"]) for w in response.json()["wallets"]]


# -- invariants -----------------------------------------------------------------------------------------------


async def scalar(connection: AsyncSession, sql: str, **params: Any) -> Any:
    return (await connection.execute(text(sql), params)).scalar()


async def assert_pool_invariants(connection: AsyncSession, *, resting_since: datetime | None = None) -> None:
    """What must hold after any interleaving of allocations, releases, disables and enables.

    ``resting_since``: wallets released after it may still rest (a reuse cool-down) while orders wait."""

    async def zero(sql: str, what: str, **params: datetime) -> None:
        statement = text(sql).bindparams(*(bindparam(name, type_=UtcDateTime()) for name in params))
        found = (await connection.execute(statement, params)).all()
        assert not found, f"{what}: {found[:10]}"

    await zero(
        """SELECT currency, network FROM wallet GROUP BY currency, network
           HAVING sum(CASE WHEN status IN ('free', 'reserved', 'disabled') THEN 1 ELSE 0 END) <> count(*)""",
        "free + reserved + disabled != total",
    )
    await zero(
        "SELECT order_id FROM wallet WHERE order_id IS NOT NULL GROUP BY order_id HAVING count(*) > 1",
        "an order holds two wallets",
    )
    await zero(
        """SELECT w.id, w.order_id FROM wallet w LEFT JOIN allocation a ON a.order_id = w.order_id
           WHERE w.status = 'reserved' AND (a.status IS NULL OR a.status <> 'allocated' OR a.wallet_id <> w.id
                 OR a.address <> w.address OR a.currency <> w.currency OR a.network <> w.network)""",
        "a reserved wallet whose order does not hold it",
    )
    await zero(
        """SELECT a.order_id FROM allocation a LEFT JOIN wallet w ON w.order_id = a.order_id
           WHERE a.status = 'allocated' AND w.id IS NULL""",
        "an allocated order without its wallet",
    )
    await zero(
        """SELECT a.order_id, a.status FROM allocation a FULL OUTER JOIN wait_queue_entry q ON q.order_id = a.order_id
           WHERE (a.status = 'queued') IS DISTINCT FROM (q.id IS NOT NULL)
              OR a.currency <> q.currency OR a.network <> q.network OR a.priority <> q.priority"""
        if connection.bind.dialect.name == "postgresql"
        else """SELECT a.order_id, a.status FROM allocation a LEFT JOIN wait_queue_entry q ON q.order_id = a.order_id
           WHERE (a.status = 'queued') <> (q.id IS NOT NULL)
           UNION ALL SELECT q.order_id, 'orphan' FROM wait_queue_entry q
           LEFT JOIN allocation a ON a.order_id = q.order_id WHERE a.status IS NOT 'queued'""",
        "the queue and the queued allocations disagree",
    )
    await zero(
        """SELECT DISTINCT q.currency, q.network FROM wait_queue_entry q JOIN wallet w
             ON w.currency = q.currency AND w.network = q.network AND w.status = 'free'
           WHERE w.released_at IS NULL OR w.released_at <= :resting_since""",
        "an order waits while a wallet of its pool is free",
        resting_since=resting_since or datetime(9999, 1, 1, tzinfo=UTC),
    )
    await zero(
        """SELECT a.order_id, b.order_id FROM allocation a JOIN allocation b
             ON a.currency = b.currency AND a.network = b.network AND a.order_id <> b.order_id
           WHERE a.enqueued_at IS NOT NULL AND a.allocated_at IS NOT NULL
             AND b.enqueued_at IS NOT NULL AND b.enqueued_at < a.allocated_at
             AND (b.status = 'queued' OR b.allocated_at > a.allocated_at
                  OR (b.allocated_at IS NULL AND b.released_at > a.allocated_at))
             AND (b.priority > a.priority OR (b.priority = a.priority AND b.enqueued_at < a.enqueued_at))""",
        "an order was served from the queue before one ahead of it",
    )
    await zero(
        """SELECT aggregate_id FROM outbox WHERE event_type = 'wallet.assigned'
           GROUP BY aggregate_id HAVING count(*) > 1""",
        "an order was announced twice",
    )
    announced = await scalar(connection, "SELECT count(*) FROM outbox WHERE event_type = 'wallet.assigned'")
    served_later = await scalar(
        connection,
        "SELECT count(*) FROM allocation WHERE enqueued_at IS NOT NULL AND allocated_at > enqueued_at",
    )
    assert announced == served_later, (
        f"{announced} wallet.assigned events for {served_later} orders served later"
    )


@dataclass
class RunningApp:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings


# -- queue analytics, recomputed from the allocation rows --------------------------------------------------------


async def queue_rows(session: AsyncSession) -> list[Any]:
    """Every allocation but tombstones: ``(currency, network, enqueued_at, allocated_at, released_at)``."""
    return list(
        (
            await session.execute(
                text(
                    "SELECT currency, network, enqueued_at, allocated_at, released_at FROM allocation"
                    " WHERE currency IS NOT NULL"
                )
            )
        ).all()
    )


def nearest_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(percent / 100 * len(ordered)) - 1]


def assert_queue_figures_match_rows(
    currencies: dict[str, Any], rows: list[Any], *, since: datetime, until: datetime, tz: ZoneInfo
) -> None:
    """Each currency's figures of ``GET /v1/stats/queue`` for ``[since, until)`` (``currencies``: its
    ``currencies`` by name) recomputed from the allocation rows (:func:`queue_rows`): the wait distribution,
    abandonment, arrivals and hand-overs per hour, and arrivals by local hour of day (every row counts: the
    rows are all within the peak-hours days)."""
    for currency, figures in currencies.items():
        mine = [r for r in rows if r.currency == currency]
        handed = [r for r in mine if r.enqueued_at and r.allocated_at and since <= r.allocated_at < until]
        waits = [(r.allocated_at - r.enqueued_at).total_seconds() for r in handed]
        wait = figures["wait"]
        assert wait["handed_over"] == len(waits) > 0, currency
        for p in (50, 90, 99):
            assert abs(wait[f"p{p}_seconds"] - nearest_rank(waits, p)) <= 1e-3, (currency, p)
        bounds = [b["le_seconds"] for b in wait["histogram"]]
        assert bounds[-1] is None
        assert bounds[:-1] == sorted(bounds[:-1])
        expected_buckets = [
            sum(1 for w in waits if (low is None or w > low) and (high is None or w <= high))
            for low, high in zip([None, *bounds[:-1]], bounds, strict=True)
        ]
        assert [b["count"] for b in wait["histogram"]] == expected_buckets, currency

        entered = [r for r in mine if r.enqueued_at and since <= r.enqueued_at < until]
        abandoned = [r for r in entered if r.allocated_at is None and r.released_at is not None]
        abandonment = figures["abandonment"]
        assert abandonment["queued"] == len(entered), currency
        assert abandonment["abandoned"] == len(abandoned), currency
        assert abs(abandonment["rate"] - len(abandoned) / len(entered)) <= 1e-4, currency

        hourly = figures["hourly"]
        first = datetime.fromisoformat(hourly["first_hour"])
        assert first == since.replace(minute=0, second=0, microsecond=0)
        assert len(hourly["arrivals"]) == len(hourly["hand_overs"]) == math.ceil((until - first) / HOUR)
        for n, (arrivals, hand_overs) in enumerate(
            zip(hourly["arrivals"], hourly["hand_overs"], strict=True)
        ):
            start, end = first + n * HOUR, first + (n + 1) * HOUR
            assert arrivals == sum(1 for r in entered if start <= r.enqueued_at < end), (currency, n)
            assert hand_overs == sum(1 for r in handed if start <= r.allocated_at < end), (currency, n)

        local_hours = [r.enqueued_at.astimezone(tz).hour for r in mine if r.enqueued_at]
        by_hour = dict(enumerate(figures["peak_hours"]["arrivals_by_hour_of_day"]))
        assert by_hour == {h: local_hours.count(h) for h in range(24)}, currency
        assert by_hour[figures["peak_hours"]["peak_hour"]] == max(by_hour.values()), currency
