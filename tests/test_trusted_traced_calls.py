"""order-api → wallet-pool as real processes: the call is authenticated with an API key and scoped, and one
trace (the correlation id) covers both services' log lines and reaches the client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.testing import ServiceProcess, eventually, migrated_database


@dataclass
class Keys:
    admin: str
    order_api_to_wallet_pool: str
    scopeless: str


def _entries(*entries: ApiKeyEntry) -> str:
    return json.dumps([e.model_dump() for e in entries])


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(admin=mint_key("adm"), order_api_to_wallet_pool=mint_key("oa"), scopeless=mint_key("oa"))


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    async with migrated_database("order-api", "wallet-pool") as url:
        yield url


@pytest.fixture
async def wallet_pool(
    database_url: str, keys: Keys, tmp_path: Path, services: list[ServiceProcess]
) -> ServiceProcess:
    accepted = _entries(
        ApiKeyEntry(name="order-api", hash=hash_key(keys.order_api_to_wallet_pool), scopes=["pool:read"]),
        ApiKeyEntry(name="order-api", hash=hash_key(keys.scopeless), scopes=[]),
    )
    process = ServiceProcess(
        app="wallet_pool.main:create_app",
        env={"WALLET_POOL_DATABASE_URL": database_url, "WALLET_POOL_API_KEYS": accepted},
        log_path=tmp_path / "wallet-pool.log",
    )
    services.append(process)
    return await process.start()


async def start_order_api(
    *, database_url: str, keys: Keys, wallet_pool_url: str, key_for_wallet_pool: str, log_path: Path
) -> ServiceProcess:
    return await ServiceProcess(
        app="order_api.main:create_app",
        env={
            "ORDER_API_DATABASE_URL": database_url,
            "ORDER_API_API_KEYS": _entries(
                ApiKeyEntry(name="admin", hash=hash_key(keys.admin), scopes=["admin"])
            ),
            "ORDER_API_WALLET_POOL__URL": wallet_pool_url,
            "ORDER_API_WALLET_POOL__API_KEY": key_for_wallet_pool,
            "ORDER_API_VAR_DIR": str(log_path.parent / "order-api-var"),
        },
        log_path=log_path,
    ).start()


async def test_one_trace_id_covers_both_services_and_reaches_the_client(
    database_url: str, keys: Keys, wallet_pool: ServiceProcess, tmp_path: Path, services: list[ServiceProcess]
) -> None:
    order_api = await start_order_api(
        database_url=database_url,
        keys=keys,
        wallet_pool_url=wallet_pool.url,
        key_for_wallet_pool=keys.order_api_to_wallet_pool,
        log_path=tmp_path / "order-api.log",
    )
    services.append(order_api)
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        response = await client.get("/v1/stats/pool", headers={"Authorization": f"Bearer {keys.admin}"})
        assert response.status_code == 200, response.text
        assert response.json()["currencies"] == []
        correlation_id = response.headers["X-Correlation-ID"]
        assert len(correlation_id) == 32

        ready = (await client.get("/health/ready")).json()
        assert ready["checks"]["peer:wallet-pool"]["status"] == "ok"

    def lines_with(process: ServiceProcess) -> list[dict[str, object]]:
        return [r for r in process.log_records() if r.get("trace_id") == correlation_id]

    async def both_logged() -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        return lines_with(order_api), lines_with(wallet_pool)

    order_lines, pool_lines = await eventually(
        both_logged, until=lambda found: bool(found[0] and found[1]), message="both services log the trace id"
    )
    assert any(r.get("route") == "/v1/stats/pool" for r in order_lines)
    assert any(r.get("route") == "/v1/stats" and r.get("status") == 200 for r in pool_lines)
    assert {r["service"] for r in order_lines} == {"order-api"}
    assert {r["service"] for r in pool_lines} == {"wallet-pool"}
    # The key itself never appears in either log.
    assert keys.order_api_to_wallet_pool not in order_api.log_text() + wallet_pool.log_text()


async def test_wallet_pool_refuses_a_missing_or_wrong_key_and_a_key_without_the_scope(
    wallet_pool: ServiceProcess, keys: Keys
) -> None:
    async with httpx.AsyncClient(base_url=wallet_pool.url) as client:
        missing = await client.get("/v1/stats")
        wrong = await client.get("/v1/stats", headers={"Authorization": f"Bearer {mint_key('oa')}"})
        scopeless = await client.get("/v1/stats", headers={"Authorization": f"Bearer {keys.scopeless}"})
    for response, status, code in (
        (missing, 401, "api_key_missing"),
        (wrong, 401, "api_key_invalid"),
        (scopeless, 403, "scope_missing"),
    ):
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert "X-Correlation-ID" in response.headers


@pytest.mark.parametrize(("key_name", "peer_status"), [("wrong", 401), ("scopeless", 403)])
async def test_order_api_with_a_bad_key_reports_it_and_answers_peer_rejected(
    database_url: str,
    keys: Keys,
    wallet_pool: ServiceProcess,
    tmp_path: Path,
    services: list[ServiceProcess],
    key_name: str,
    peer_status: int,
) -> None:
    key = mint_key("oa") if key_name == "wrong" else keys.scopeless
    order_api = await start_order_api(
        database_url=database_url,
        keys=keys,
        wallet_pool_url=wallet_pool.url,
        key_for_wallet_pool=key,
        log_path=tmp_path / "order-api.log",
    )
    services.append(order_api)
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        response = await client.get("/v1/stats/pool", headers={"Authorization": f"Bearer {keys.admin}"})
        ready = await client.get("/health/ready")
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "peer_rejected"
    assert problem["peer"] == "wallet-pool"
    assert problem["peer_status"] == peer_status
    # A peer problem is reported by readiness but does not take order-api out of rotation.
    assert ready.status_code == 200
    assert ready.json()["checks"]["peer:wallet-pool"]["status"] == "failing"
