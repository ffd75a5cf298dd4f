"""``/metrics`` counts requests per route template, the requests being handled and the process's own
figures; ``/health/ready`` follows the critical dependencies."""

from __future__ import annotations

import asyncio
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


def gauge(exposition: str, name: str) -> float:
    [value] = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    ]
    return value


async def test_the_requests_being_handled_and_the_process_are_on_metrics(tmp_path: Path) -> None:
    """On-call sees a pile-up as it happens (requests in flight, open streams included) and the process
    behind it: its memory, CPU, open files and garbage collections."""
    app = create_demo_app(KitSettings(service_name="kit-metrics", var_dir=tmp_path))
    entered, release = asyncio.Event(), asyncio.Event()

    @app.get("/v1/held")
    async def held() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"status": "done"}

    async with in_process_client(app) as client:
        waiting = asyncio.create_task(client.get("/v1/held"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        during = (await client.get("/metrics")).text
        release.set()
        assert (await waiting).status_code == 200
        after = (await client.get("/metrics")).text
    assert gauge(during, "http_requests_in_flight") == 2  # the held request and the scrape itself
    assert gauge(after, "http_requests_in_flight") == 1
    assert gauge(after, "process_resident_memory_bytes") > 0
    assert gauge(after, "process_open_fds") > 0
    assert 'python_gc_collections_total{generation="0"}' in after
    assert "python_info{" in after


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
