"""What every service shows, and to whom: the client address comes from the service's own trusted proxies, not
from uvicorn's; no ``Server`` banner; the security headers on every service; CORS allows the methods the
routes have."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from desk_testing.stack import Stack
from servicekit.app import CORS_METHODS
from servicekit.testing import ServiceProcess, migrated_database
from servicekit.testing.docs import assert_docs_served_offline

SERVICES = ["order_api", "wallet_pool", "notifier", "telegram_gateway"]
ORIGIN = "https://desk.example"


def service_app(package: str, var_dir: Path) -> FastAPI:
    """A service's app with its default (development) settings."""
    main = importlib.import_module(f"{package}.main")
    settings_module = importlib.import_module(f"{package}.settings")
    app: FastAPI = main.create_app(settings_module.Settings(var_dir=var_dir))
    return app


def in_process(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with migrated_database("order-api") as url:
        yield Stack(database_url=url, logs=tmp_path)


async def test_a_spoofed_x_forwarded_for_from_loopback_is_not_believed_without_trusted_proxies(
    stack: Stack, services: list[ServiceProcess]
) -> None:
    """order-api as a real uvicorn process with ``TRUSTED_PROXIES=[]`` (the default): every request comes
    from 127.0.0.1, whatever ``X-Forwarded-For`` claims, so they share one rate-limit budget. uvicorn's own
    proxy-header handling (on by default, trusting 127.0.0.1) gave each claimed address a budget of its own."""
    order_api = stack.order_api(ORDER_API_AUTH_RATE_LIMIT="2/minute")
    services.append(await order_api.start())
    async with httpx.AsyncClient(base_url=order_api.url) as client:
        statuses = []
        for n in range(3):
            response = await client.post(
                "/v1/auth/email-code",
                json={"email": f"spoof{n}@example.com"},
                headers={"X-Forwarded-For": f"203.0.113.{n + 1}"},
            )
            statuses.append(response.status_code)
            assert "server" not in response.headers  # no banner either
    assert statuses == [202, 202, 429]


@pytest.mark.parametrize("package", SERVICES)
async def test_every_service_answers_with_the_security_headers(package: str, tmp_path: Path) -> None:
    app = service_app(package, tmp_path)
    async with in_process(app) as client:
        answers = [await client.get("/health/live"), await client.get("/v1/no-such-route")]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        assert answer.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("package", SERVICES)
async def test_every_service_serves_its_docs_without_the_internet(package: str, tmp_path: Path) -> None:
    app = service_app(package, tmp_path)
    async with in_process(app) as client:
        await assert_docs_served_offline(client)


@pytest.mark.parametrize("package", SERVICES)
def test_cors_allows_every_method_the_routes_have(package: str, tmp_path: Path) -> None:
    app = service_app(package, tmp_path)
    methods = {
        method for route in app.routes if isinstance(route, APIRoute) for method in route.methods or ()
    }
    assert methods <= set(CORS_METHODS)


async def test_a_browser_admin_screen_on_an_allowed_origin_may_patch_an_operator(tmp_path: Path) -> None:
    from order_api.main import create_app
    from order_api.settings import Settings

    app = create_app(Settings(var_dir=tmp_path, cors_origins=[ORIGIN]))
    preflight = {
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "authorization, content-type, if-match, traceparent",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        allowed = await client.options("/v1/admin/operators/1", headers={"Origin": ORIGIN, **preflight})
        refused = await client.options(
            "/v1/admin/operators/1", headers={"Origin": "https://elsewhere.example", **preflight}
        )
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "PATCH" in allowed.headers["access-control-allow-methods"]
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert refused.headers["x-content-type-options"] == "nosniff"
