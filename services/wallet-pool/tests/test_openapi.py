"""The OpenAPI document describes every route: summary, description, scopes and problem responses."""

from __future__ import annotations

from typing import Any

from servicekit.openapi import INTERNAL_OPENAPI_URL
from wallet_pool.testing import PoolApi


def v1_operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in methods.items()
    }


async def test_every_route_is_documented(api: PoolApi) -> None:
    public = v1_operations((await api.client.get("/openapi.json")).json())
    internal = v1_operations((await api.client.get(INTERNAL_OPENAPI_URL)).json())
    assert set(public) == {
        ("POST", "/v1/wallets"),
        ("GET", "/v1/wallets"),
        ("POST", "/v1/wallets/{wallet_id}/disable"),
        ("POST", "/v1/wallets/{wallet_id}/enable"),
        ("GET", "/v1/stats"),
        ("GET", "/v1/stats/queue"),
        ("GET", "/v1/admin/outbox"),
        ("POST", "/v1/admin/outbox/{event_id}/replay"),
    }
    assert set(internal) == {  # only order-api and the other services call these
        ("POST", "/v1/allocations"),
        ("GET", "/v1/allocations/{order_id}"),
        ("POST", "/v1/allocations/{order_id}/release"),
        ("POST", "/v1/events"),
        ("POST", "/v1/events/batch"),
    }
    operations = public | internal
    for key, operation in operations.items():
        if key[1].startswith("/v1/events"):  # servicekit's receiver, the same in every service
            continue
        assert operation["summary"], key
        assert "Scope `" in operation["description"], key
        assert "application/problem+json" in operation["responses"]["403"]["content"], key
    allocate = operations[("POST", "/v1/allocations")]["responses"]
    assert {"201", "202", "409", "422"} <= set(allocate)
    assert allocate["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/AllocationQueuedRead")
    queue = operations[("GET", "/v1/stats/queue")]
    assert queue["operationId"] == "getQueueStats"
    assert set(queue["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert queue["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/QueueStatsRead"
    )
