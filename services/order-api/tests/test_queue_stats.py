"""Staff read wallet-pool's queue analytics through order-api (``GET /v1/stats/queue``): every member of staff
with their own token and the admin API key, never a customer; every figure wallet-pool computes is carried,
bounded as a peer's answer; CSV on ``Accept: text/csv``; bad input refused naming the field."""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.service import open_full_session
from order_api.testing import ApiKeys, CustomerFactory, OrderApi, OrderApiRunner
from servicekit.settings import PeerSettings
from servicekit.testing import serve_stand_in


def figures(network: str | None) -> dict[str, Any]:
    return {
        "wait": {
            "handed_over": 2,
            "p50_seconds": 1300.0,
            "p90_seconds": 2300.0,
            "p99_seconds": 2300.0,
            "histogram": [
                {"le_seconds": 1800.0, "count": 1},
                {"le_seconds": 3600.0, "count": 1},
                {"le_seconds": None, "count": 0},
            ],
        },
        "abandonment": {"queued": 6, "handed_over": 2, "abandoned": 2, "still_waiting": 2, "rate": 0.3333},
        "capacity": {
            "method": "erlang_c",
            "arrival_rate_per_hour": 2.0,
            "mean_holding_seconds": 2300.0,
            "reuse_cooldown_seconds": 0,
            "offered_load": 1.2778,
            "usable_wallets": 2,
            "recommended_wallets": 4,
            "shortfall": 2,
            "p_wait_over_target": 0.3912 if network else None,
        },
        "peak_hours": {"peak_hour": 19, "arrivals_by_hour_of_day": [6 if h == 19 else 0 for h in range(24)]},
        "hourly": {"first_hour": "2026-12-06T13:00:00Z", "arrivals": [4, 2], "hand_overs": [1, 1]},
        **({"network": network} if network else {}),
    }


ANSWER: dict[str, Any] = {
    "generated_at": "2026-12-06T14:30:00Z",
    "since": "2026-12-06T12:30:00Z",
    "until": "2026-12-06T14:30:00Z",
    "peak_days": 7,
    "tz": "Asia/Kolkata",
    "target_p90_wait_seconds": 600,
    "currencies": [{**figures(None), "currency": "BTC", "networks": [figures("bitcoin")]}],
}


@dataclass
class QueueStandIn:
    """wallet-pool's ``GET /v1/stats/queue``, answering ``answer`` as given."""

    answer: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(ANSWER))
    queries: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
async def wallet_pool() -> AsyncIterator[tuple[QueueStandIn, PeerSettings]]:
    stand_in = QueueStandIn()

    async def queue_stats(request: web.Request) -> web.Response:
        stand_in.queries.append(dict(request.query))
        return web.json_response(stand_in.answer)

    app = web.Application()
    app.router.add_get("/v1/stats/queue", queue_stats)
    async with serve_stand_in(app) as url:
        yield stand_in, PeerSettings(url=url, timeout_seconds=2.0)


@pytest.fixture
async def desk(
    order_api: OrderApiRunner, db_session: AsyncSession, wallet_pool: tuple[QueueStandIn, PeerSettings]
) -> AsyncIterator[OrderApi]:
    async with order_api(session=db_session, wallet_pool=wallet_pool[1]) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_member_of_staff_reads_every_figure_and_customers_do_not(
    desk: OrderApi,
    api_keys: ApiKeys,
    wallet_pool: tuple[QueueStandIn, PeerSettings],
    db_session: AsyncSession,
    make_customer: CustomerFactory,
) -> None:
    stand_in, _ = wallet_pool
    tokens = {"admin key": api_keys.admin}
    for role in ("operator", "support", "admin"):
        hired = await desk.client.post(
            "/v1/admin/operators", json={"name": f"{role} one", "role": role}, headers=bearer(api_keys.admin)
        )
        assert hired.status_code == 201, hired.text
        tokens[role] = hired.json()["token"]
    params = {"days": "2", "tz": "Asia/Kolkata", "target_p90_wait_seconds": "600"}
    for who, token in tokens.items():
        response = await desk.client.get("/v1/stats/queue", params=params, headers=bearer(token))
        assert response.status_code == 200, (who, response.text)
        assert response.json() == ANSWER, who  # every field wallet-pool computed, nothing dropped
    assert stand_in.queries[-1] == {**params, "peak_days": "7"}

    customer = await make_customer()
    issued = await open_full_session(session=db_session, settings=desk.settings, customer_id=customer.id)
    refused = await desk.client.get("/v1/stats/queue", headers=bearer(issued.token))
    assert refused.status_code in (401, 403), refused.text
    assert (await desk.client.get("/v1/stats/queue")).status_code == 401
    assert len(stand_in.queries) == len(tokens)  # the refused calls never reached wallet-pool

    as_csv = await desk.client.get(
        "/v1/stats/queue", headers={**bearer(tokens["support"]), "Accept": "text/csv"}
    )
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = dict(list(csv.reader(io.StringIO(as_csv.text)))[1:])
    assert lines["currencies[BTC].networks[bitcoin].capacity.p_wait_over_target"] == "0.3912"
    assert lines["currencies[BTC].capacity.p_wait_over_target"] == ""
    assert lines["currencies[BTC].hourly.arrivals[1]"] == "2"
    assert lines["currencies[BTC].peak_hours.arrivals_by_hour_of_day[19]"] == "6"


async def test_bad_input_and_unbelievable_answers(
    desk: OrderApi, api_keys: ApiKeys, wallet_pool: tuple[QueueStandIn, PeerSettings]
) -> None:
    stand_in, _ = wallet_pool
    admin = bearer(api_keys.admin)
    for params, name in (
        ({"days": "0"}, "days"),
        ({"peak_days": "365"}, "peak_days"),
        ({"since": "yesterday"}, "since"),
    ):
        response = await desk.client.get("/v1/stats/queue", params=params, headers=admin)
        assert response.status_code == 422, response.text
        assert name in response.text
    assert stand_in.queries == []  # refused by order-api itself

    stand_in.answer["currencies"][0]["networks"][0]["hourly"]["arrivals"] = [0] * (31 * 24 + 2)  # > 31 days
    too_long = await desk.client.get("/v1/stats/queue", headers=admin)
    assert (too_long.status_code, too_long.json()["code"]) == (503, "peer_unavailable"), too_long.text
    stand_in.answer = copy.deepcopy(ANSWER)
    stand_in.answer["currencies"][0]["networks"][0]["abandonment"]["rate"] = 7.5
    absurd = await desk.client.get("/v1/stats/queue", headers=admin)
    assert (absurd.status_code, absurd.json()["code"]) == (503, "peer_unavailable"), (
        absurd.text
    )  # as no answer
