"""What a service shows, and to whom: the API documentation off in production, ``/metrics`` and readiness
details behind a ``metrics:read`` key there, and the security headers on every response."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import Response

from servicekit.apikeys import ApiKeyEntry, hash_key, mint_key
from servicekit.openapi import INTERNAL_OPENAPI_URL
from servicekit.settings import ServiceSettings
from servicekit.testing.docs import assert_docs_served_offline
from servicekit.testing.kitapps import KitSettings, create_demo_app, in_process_client

DOCS = ("/docs", "/redoc", "/openapi.json", INTERNAL_OPENAPI_URL)
METRICS_KEY = mint_key("prom")
OTHER_KEY = mint_key("kc")
KEYS = [
    ApiKeyEntry(name="prometheus", hash=hash_key(METRICS_KEY), scopes=["metrics:read"]),
    ApiKeyEntry(name="kit-caller", hash=hash_key(OTHER_KEY), scopes=["items:read"]),
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_security_headers(response: httpx.Response, *, cache_control: str = "no-store") -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == cache_control
    assert "strict-transport-security" not in headers


def production(tmp_path: Path, pg_url: str, **overrides: object) -> KitSettings:
    return KitSettings(
        service_name="kit-exposure",
        environment="production",
        var_dir=tmp_path,
        database_url=pg_url,
        api_keys=KEYS,
        **overrides,  # type: ignore[arg-type]
    )


def test_production_defaults_hide_docs_and_put_metrics_behind_a_key() -> None:
    assert ServiceSettings(environment="production").docs_public is False
    assert ServiceSettings(environment="production").metrics_need_key is True
    assert ServiceSettings(environment="development").docs_public is True
    assert ServiceSettings(environment="development").metrics_need_key is False
    opened = ServiceSettings(environment="production", api_docs="public", metrics_access="public")
    assert (opened.docs_public, opened.metrics_need_key) == (True, False)


async def test_production_serves_no_docs_and_metrics_and_readiness_details_only_with_a_key(
    tmp_path: Path, pg_url: str
) -> None:
    app = create_demo_app(production(tmp_path, pg_url))
    async with in_process_client(app) as client:
        for path in (*DOCS, "/docs/oauth2-redirect", "/docs-assets/swagger-ui-bundle.js"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert_security_headers(response)

        anonymous = await client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "api_key_missing"
        assert "http_requests_total" not in anonymous.text
        without_scope = await client.get("/metrics", headers=bearer(OTHER_KEY))
        assert without_scope.status_code == 403
        assert without_scope.json()["code"] == "scope_missing"
        metrics = await client.get("/metrics", headers=bearer(METRICS_KEY))
        assert metrics.status_code == 200
        assert "http_requests_total" in metrics.text
        assert_security_headers(metrics)

        for headers in ({}, bearer(OTHER_KEY), {"Authorization": "Bearer nonsense"}):
            probe = await client.get("/health/ready", headers=headers)
            assert probe.status_code == 200
            assert probe.json() == {"status": "ready"}
        detailed = await client.get("/health/ready", headers=bearer(METRICS_KEY))
        assert detailed.status_code == 200
        assert detailed.json()["checks"]["database"]["detail"] == "postgresql"
        assert (await client.get("/health/live")).status_code == 200


async def test_a_failing_readiness_keeps_its_503_without_the_details(tmp_path: Path) -> None:
    nobody = "postgresql+asyncpg://postgres@127.0.0.1:1/desk"
    app = create_demo_app(production(tmp_path, nobody))
    async with in_process_client(app) as client:
        probe = await client.get("/health/ready")
        detailed = await client.get("/health/ready", headers=bearer(METRICS_KEY))
    assert (probe.status_code, probe.json()) == (503, {"status": "not_ready"})
    assert detailed.status_code == 503
    assert detailed.json()["checks"]["database"]["status"] == "failing"


async def test_development_serves_docs_metrics_and_readiness_details_to_anyone(tmp_path: Path) -> None:
    app = create_demo_app(KitSettings(service_name="kit-exposure", var_dir=tmp_path))
    async with in_process_client(app) as client:
        for path in DOCS:
            assert (await client.get(path)).status_code == 200, path
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/health/ready")).json()["checks"]["database"]["status"] == "ok"


async def test_the_documentation_pages_load_everything_from_the_service_itself(tmp_path: Path) -> None:
    """A desk without internet still has working docs: Swagger UI and ReDoc name no outside host, every
    asset they reference is served here with its type, and their policy lets the browser load nothing else."""
    app = create_demo_app(KitSettings(service_name="kit-exposure", var_dir=tmp_path))
    async with in_process_client(app) as client:
        await assert_docs_served_offline(client)
        # The assets themselves are not documents: they keep the policy that allows nothing.
        bundle = await client.get("/docs-assets/swagger-ui-bundle.js")
    assert bundle.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert bundle.headers["cache-control"] == "no-cache"


async def test_every_response_carries_the_security_headers(tmp_path: Path) -> None:
    app = create_demo_app(
        KitSettings(service_name="kit-exposure", var_dir=tmp_path, cors_origins=["https://desk.example"])
    )

    @app.get("/v1/cacheable")
    async def cacheable() -> Response:
        return Response(b"{}", media_type="application/json", headers={"Cache-Control": "max-age=60"})

    async with in_process_client(app) as client:
        answers = [
            await client.get("/v1/items/a"),  # 200
            await client.get("/v1/items/missing"),  # 404 problem
            await client.post("/v1/orders", json={}),  # 422 problem
            await client.get("/v1/boom"),  # 500 from the outermost error layer
            await client.get("/v1/limited"),  # 429
            await client.get("/v1/private"),  # 401
            await client.get("/no-such-route"),
            await client.post("/v1/orders", json={"amount": "1", "items": []}),  # 201
            await client.options(  # a CORS preflight, answered by the CORS layer itself
                "/v1/orders",
                headers={"Origin": "https://desk.example", "Access-Control-Request-Method": "POST"},
            ),
        ]
        own_choice = await client.get("/v1/cacheable")
    assert [answer.status_code for answer in answers] == [200, 404, 422, 500, 429, 401, 404, 201, 200]
    for answer in answers:
        assert_security_headers(answer)
        assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert "server" not in answer.headers
    # A route that says it may be cached keeps its own Cache-Control.
    assert_security_headers(own_choice, cache_control="max-age=60")


async def test_strict_transport_security_is_sent_when_configured(tmp_path: Path) -> None:
    settings = KitSettings(service_name="kit-exposure", var_dir=tmp_path, hsts_max_age_seconds=31536000)
    async with in_process_client(create_demo_app(settings)) as client:
        response = await client.get("/v1/items/a")
    assert response.headers["strict-transport-security"] == "max-age=31536000"
