"""Test helpers for order-api and the suites that exercise it (like ``servicekit.testing``): fixed data keys,
the API keys its test app accepts, the running app and its settings factory, a recorder of the events a peer
receives, and the body of an order as a frontend sends it. The fixtures that hand these out are in
``services/order-api/tests/conftest.py``."""

from __future__ import annotations

import base64
import hashlib
import statistics
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from coin_addresses import demo_transaction_hash
from order_api.customers.models import Customer
from order_api.settings import Settings
from servicekit.apikeys import ApiKeyEntry, hash_key
from servicekit.db import utcnow
from servicekit.state import service_state
from servicekit.testing import migrate_embedded


def _test_key(label: str) -> str:
    """A fixed 32-byte key per label: tests are repeatable, and no dev secrets file is written."""
    return base64.b64encode(hashlib.sha256(f"order-api tests: {label}".encode()).digest()).decode()


TEST_DATA_KEY_ID = "test1"
TEST_DATA_KEYS = {TEST_DATA_KEY_ID: _test_key("data key 1")}
TEST_BLIND_INDEX_KEY = _test_key("blind index")
UNREACHABLE_PEER = "http://127.0.0.1:9"
"""A peer URL nothing listens on (the discard port): relays and clients fail fast, never hang."""
PAYOUT_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
"""A valid USDT (TRC20) payout address."""


def wallet_assigned(order_id: str, address: str) -> dict[str, Any]:
    """wallet-pool's ``wallet.assigned`` envelope giving the BTC order ``order_id`` ``address``, as its relay
    sends it to ``POST /v1/events``."""
    return {
        "id": str(uuid.uuid4()),
        "type": "wallet.assigned",
        "source": "wallet-pool",
        "occurred_at": utcnow().isoformat(),
        "aggregate_id": order_id,
        "payload": {"order_id": order_id, "currency": "BTC", "network": "bitcoin", "address": address},
    }


def order_body(email: str | None = None, /, **overrides: Any) -> dict[str, Any]:
    """``POST /v1/orders``'s body as a frontend sends it: 0.05 BTC for USDT (TRC20), from ``email`` (a fresh
    address when not given); ``overrides`` replace or add fields (``email=None`` included)."""
    return {
        "email": email or f"c.{uuid.uuid4().hex[:10]}@example.com",
        "from_currency": "BTC",
        "to_currency": "USDT",
        "to_network": "TRC20",
        "amount": "0.05",
        "payout_address": PAYOUT_USDT,
        **overrides,
    }


@dataclass(frozen=True)
class TwoRoleDatabase:
    """One database, two ways in: as the owner of the schema (who ran the migrations), and as the runtime role
    the service runs as."""

    owner_url: str
    runtime_url: str
    runtime_role: str


@dataclass(frozen=True)
class ApiKeys:
    """Minted API keys the test app accepts, by caller."""

    admin: str
    wallet_pool: str
    telegram_gateway: str

    def entries(self) -> list[ApiKeyEntry]:
        return [
            ApiKeyEntry(name="admin", hash=hash_key(self.admin), scopes=["admin"]),
            ApiKeyEntry(name="wallet-pool", hash=hash_key(self.wallet_pool), scopes=["events:publish"]),
            ApiKeyEntry(
                name="telegram-gateway",
                hash=hash_key(self.telegram_gateway),
                scopes=["orders:act-as-operator"],
            ),
        ]


async def hire(
    api: OrderApi, api_keys: ApiKeys, *, role: str = "operator", telegram_user_id: int | None = None
) -> dict[str, Any]:
    """A new member of staff, created with the admin API key: ``POST /v1/admin/operators``'s answer (its
    ``id`` and the personal ``token`` among it)."""
    body: dict[str, Any] = {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role}
    if telegram_user_id is not None:
        body["telegram_user_id"] = telegram_user_id
    response = await api.client.post(
        "/v1/admin/operators", json=body, headers={"Authorization": f"Bearer {api_keys.admin}"}
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class SettingsFactory(Protocol):
    def __call__(self, **overrides: Any) -> Settings: ...


CustomerFactory = Callable[..., Awaitable[Customer]]


@dataclass
class OrderApi:
    """order-api running in process: its app, settings and a client for it."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings


class OrderApiRunner(Protocol):
    def __call__(
        self, *, session: AsyncSession | None = None, **overrides: Any
    ) -> AbstractAsyncContextManager[OrderApi]: ...


@asynccontextmanager
async def embedded_order_api(order_api: OrderApiRunner, var_dir: Path) -> AsyncIterator[OrderApi]:
    """order-api on the embedded default, SQLite files in ``var_dir`` (migrated first), until the block ends."""
    await migrate_embedded(var_dir, "order-api")
    async with order_api(database_url=None, var_dir=var_dir) as running:
        assert service_state(running.app).runtime.database.engine.dialect.name == "sqlite"
        yield running


@dataclass
class StandInReceiver:
    """What a stand-in peer received on ``POST /v1/events``."""

    url: str = ""
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e.get("type") == event_type]


def completion_body(
    order: Mapping[str, Any],
    *,
    received: str | None = None,
    sent: str = "1000",
    comment: str | None = None,
    **transaction: Any,
) -> dict[str, Any]:
    """The body that completes ``order`` (as the API returned it) with a valid transaction record: the deposit
    on its ``from_network`` (``received``, by default exactly the ordered amount), the payout of ``sent`` on
    its ``to_network``; ``transaction`` adds to or replaces parts of the record."""
    record: dict[str, Any] = {
        "deposit": {
            "tx_hash": demo_transaction_hash(network=order["from_network"], seed=f"deposit/{order['id']}"),
            "amount": received if received is not None else order["amount"],
        },
        "payout": {
            "tx_hash": demo_transaction_hash(network=order["to_network"], seed=f"payout/{order['id']}"),
            "amount": sent,
        },
        **transaction,
    }
    body: dict[str, Any] = {"status": "completed", "transaction": record}
    if comment is not None:
        body["comment"] = comment
    return body


# -- the order statistics, recomputed from the orders ----------------------------------------------------------


@dataclass
class Seeded:
    """One order as written, and what happened to it (seconds after its creation): what the order statistics
    are recomputed from (:func:`assert_report_matches_orders`)."""

    currency: str
    network: str
    amount: str
    created: datetime
    address_after: float | None = None
    takes: list[tuple[str, float]] = field(
        default_factory=list
    )  # (operator key, seconds); given back between
    close: tuple[str, float, str] | None = None  # (status, seconds, actor)
    reassigned_to: tuple[str, float] | None = None  # (operator key, seconds): support hands it over
    received: str | None = None  # the deposit a completion recorded (None: completed without a record)

    @property
    def status(self) -> str:
        if self.close is not None:
            return self.close[0]
        if self.takes:
            return "in_progress"
        return "awaiting_deposit" if self.address_after is not None else "queued"


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p99": None}
    if len(values) == 1:
        return {"count": 1, "p50": values[0], "p90": values[0], "p99": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "count": len(values),
        "p50": round(cuts[49], 3),
        "p90": round(cuts[89], 3),
        "p99": round(cuts[98], 3),
    }


def outcome(o: Seeded) -> str:
    if o.close is None:
        return "open"
    status, _, who = o.close
    if status != "cancelled":
        return status
    return "cancelled_by_customer" if who == "customer" else "cancelled_by_operator"


def expected(orders: list[Seeded]) -> dict[str, Any]:
    closed_by_holder = [o for o in orders if o.close and o.close[0] in ("completed", "cancelled") and o.takes]
    return {
        "by_status": Counter(o.status for o in orders),
        "conversion": Counter(outcome(o) for o in orders),
        "durations": {
            "time_to_address": percentiles([o.address_after for o in orders if o.address_after is not None]),
            "time_to_take": percentiles(
                [o.takes[0][1] - o.address_after for o in orders if o.takes and o.address_after is not None]
            ),
            "handling_time": percentiles(
                [o.close[1] - o.takes[-1][1] for o in closed_by_holder if o.close is not None]
            ),
            "time_to_complete": percentiles(
                [o.close[1] for o in orders if o.close is not None and o.close[0] == "completed"]
            ),
        },
    }


def group_by(orders: list[Seeded], key: Callable[[Seeded], Any]) -> dict[Any, list[Seeded]]:
    groups: dict[Any, list[Seeded]] = {}
    for o in orders:
        groups.setdefault(key(o), []).append(o)
    return groups


def assert_report_matches_orders(
    report: dict[str, Any], day: list[Seeded], *, bands: Mapping[str, Sequence[Decimal]]
) -> None:
    """Every figure of ``GET /v1/stats/orders`` (desk scope, ``tz=UTC``) recomputed from the window's orders:
    counts by status, conversion, the durations' percentiles, the breakdowns by currency, amount band and
    hour of day."""
    want = expected(day)
    assert {k: v for k, v in report["by_status"].items() if v} == want["by_status"]
    conversion = report["conversion"]
    assert conversion["created"] == len(day)
    for name in ("completed", "cancelled_by_customer", "cancelled_by_operator", "expired", "open"):
        assert conversion[name] == want["conversion"][name], name
    assert conversion["cancelled_by_system"] == 0
    assert conversion["completion_rate"] == round(want["conversion"]["completed"] / len(day), 4)
    for name, figures in want[
        "durations"
    ].items():  # PostgreSQL's float arithmetic may differ in the last digit
        got = report["durations"][name]
        assert got["count"] == figures["count"], name
        for p in ("p50", "p90", "p99"):
            assert (got[p] is None) == (figures[p] is None), (name, p)
            assert got[p] is None or abs(got[p] - figures[p]) <= 0.002, (name, p, got[p], figures[p])

    by_currency = {(t["currency"], t["network"]): t for t in report["by_currency"]}
    for (currency, network), orders in group_by(day, lambda o: (o.currency, o.network)).items():
        tally = by_currency.pop((currency, network))
        assert tally["orders"] == len(orders)
        assert tally["completed"] == sum(o.status == "completed" for o in orders)
        assert Decimal(tally["amount"]) == sum(Decimal(o.amount) for o in orders)
    assert by_currency == {}

    def band(o: Seeded) -> str:
        bounds = [Decimal(0), *bands.get(o.currency, [])]
        lower = max(b for b in bounds if b <= Decimal(o.amount))
        upper = next((b for b in bounds if b > Decimal(o.amount)), None)
        return f"{o.currency} {lower}-{upper}" if upper is not None else f"{o.currency} {lower}+"

    assert {f"{t['currency']} {t['band']}": t["orders"] for t in report["by_band"]} == {
        key: len(orders) for key, orders in group_by(day, band).items()
    }

    hours = group_by(day, lambda o: o.created.hour)
    assert [t["hour"] for t in report["by_hour_of_day"]] == list(range(24))
    assert {t["hour"]: t["orders"] for t in report["by_hour_of_day"] if t["orders"]} == {
        h: len(orders) for h, orders in hours.items()
    }
