"""``/metrics`` counts requests per route template; ``/health/ready`` follows the critical dependencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from servicekit.app import Runtime
from servicekit.client import ServiceClient
from servicekit.settings import PeerSettings
from servicekit.testing import free_port
from servicekit.testing.kitapps import KitSettings, create_demo_app, in_process_client


def request_counts(exposition: str) -> dict[tuple[str, str, str], float]:
    (family,) = [f for f in text_string_to_metric_families(exposition) if f.name == "http_requests"]
    return {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in family.samples
        if s.name == "http_requests_total"
    }


async def test_requests_are_counted_by_route_template_never_by_raw_path(tmp_path: Path) -> None:
    app = create_demo_app(KitSettings(service_name="kit-metrics", var_dir=tmp_path))
    async with in_process_client(app) as client:
        for path in ("/v1/items/a", "/v1/items/b", "/v1/items/missing", "/v1/no-such-route"):
            await client.get(path)
        await client.post("/v1/orders", json={})
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    counts = request_counts(response.text)
    assert counts[("GET", "/v1/items/{item_id}", "200")] == 2
    assert counts[("GET", "/v1/items/{item_id}", "404")] == 1
    assert counts[("POST", "/v1/orders", "422")] == 1
    routes = {route for _, route, _ in counts}
    assert not routes & {"/v1/items/a", "/v1/items/b", "/v1/items/missing", "/v1/no-such-route"}
    assert (
        'http_request_duration_seconds_count{method="GET",route="/v1/items/{item_id}"} 3.0' in response.text
    )


async def ready(app_settings: KitSettings, **peer: Any) -> tuple[int, dict[str, Any]]:
    runtime = Runtime(app_settings, schema="kit_health")
    if peer:
        runtime.add_peer("wallet-pool", PeerSettings(url=peer["url"]), probe=peer["probe"])
    app = create_demo_app(app_settings, runtime=runtime)
    async with in_process_client(app) as client:
        assert (await client.get("/health/live")).json() == {"status": "live", "service": "kit-health"}
        response = await client.get("/health/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_ready_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    nobody = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/desk"
    status, body = await ready(KitSettings(service_name="kit-health", var_dir=tmp_path, database_url=nobody))
    assert status == 503
    assert body["status"] == "not_ready"
    database = body["checks"]["database"]
    assert (database["status"], database["critical"]) == ("failing", True)
    assert database["detail"]


async def test_ready_is_200_when_postgres_and_redis_answer(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    settings = KitSettings(
        service_name="kit-health", var_dir=tmp_path, database_url=pg_url, redis_url=redis_url
    )
    status, body = await ready(settings)
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["detail"] == "postgresql"
    assert body["checks"]["redis"]["status"] == "ok"


async def test_a_failing_non_critical_check_is_reported_but_keeps_the_service_ready(tmp_path: Path) -> None:
    async def probe(client: ServiceClient) -> str | None:
        await client.get_json("/v1/pool/stats")
        return "reachable"

    settings = KitSettings(service_name="kit-health", var_dir=tmp_path)
    status, body = await ready(settings, url=f"http://127.0.0.1:{free_port()}", probe=probe)
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {**body["checks"]["database"], "status": "ok", "detail": "sqlite"}
    peer = body["checks"]["peer:wallet-pool"]
    assert (peer["status"], peer["critical"]) == ("failing", False)
    assert peer["detail"].startswith("PeerUnavailableError: wallet-pool is unreachable")
