"""Every service publishes an OpenAPI document a frontend developer can work from: it renders, every
operation has a summary, and every business route declares its problem+json error responses."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import httpx
import pytest

SERVICES = ["order_api", "wallet_pool", "notifier", "telegram_gateway"]
OPERATIONS_PATHS = ("/health/", "/metrics")


async def openapi_of(package: str, var_dir: Path) -> dict[str, Any]:
    main = importlib.import_module(f"{package}.main")
    settings_module = importlib.import_module(f"{package}.settings")
    app = main.create_app(settings_module.Settings(var_dir=var_dir))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


@pytest.mark.parametrize("package", SERVICES)
async def test_the_openapi_document_describes_every_route_and_its_errors(
    package: str, tmp_path: Path
) -> None:
    document = await openapi_of(package, tmp_path)
    assert document["info"]["title"].startswith("Exchange Desk")
    assert document["info"]["description"].strip()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            if path.startswith(OPERATIONS_PATHS):
                continue
            problems = [
                status
                for status, response in operation["responses"].items()
                if status.startswith(("4", "5")) and "application/problem+json" in response.get("content", {})
            ]
            assert problems, f"{method.upper()} {path} declares no problem+json error response"
