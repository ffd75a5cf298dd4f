"""Every error a service answers is ``application/problem+json`` with a stable ``code``; nothing internal leaks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from desk_contracts.errors import ErrorCode
from servicekit import errors
from servicekit.errors import PROBLEM_JSON
from servicekit.testing.kitapps import KitSettings, create_demo_app, in_process_client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = KitSettings(service_name="kit-errors", var_dir=tmp_path)
    async with in_process_client(create_demo_app(settings)) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"urn:exchange-desk:problem:{body['code']}"
    return body


async def test_a_domain_error_is_rendered_with_its_status_code_and_detail(client: httpx.AsyncClient) -> None:
    body = problem(await client.get("/v1/items/missing"), 404)
    assert body["code"] == "not_found"
    assert body["title"] == "Not found"
    assert body["detail"] == "No item missing."
    assert body["instance"] == "/v1/items/missing"


async def test_validation_errors_are_422_naming_every_failing_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/orders",
        json={"amount": "lots", "items": [{"sku": "a", "price": "1.25"}, {"sku": "b", "price": "cheap"}]},
    )
    body = problem(response, 422)
    assert body["code"] == "validation_failed"
    assert [e["field"] for e in body["errors"]] == ["amount", "items.1.price"]
    assert all(e["message"] and e["type"] for e in body["errors"])

    missing = problem(await client.post("/v1/orders", json={"items": [{"price": "1"}]}), 422)
    assert {(e["field"], e["type"]) for e in missing["errors"]} == {
        ("amount", "missing"),
        ("items.0.sku", "missing"),
    }


async def test_an_unknown_route_is_a_404_problem(client: httpx.AsyncClient) -> None:
    body = problem(await client.get("/v1/no-such-thing"), 404)
    assert body["code"] == "not_found"
    assert body["instance"] == "/v1/no-such-thing"


async def test_an_unexpected_exception_is_a_bare_500_that_leaks_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/boom")
    body = problem(response, 500)
    assert body["code"] == "internal_error"
    for leak in ("SELECT", "password", "RuntimeError", "Traceback", "kitapps", ".py"):
        assert leak not in response.text
    # The detail promises that the correlation id finds the error in the logs: it must be on the response.
    assert len(response.headers["X-Correlation-ID"]) == 32


async def test_rate_limited_is_429_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/limited")
    body = problem(response, 429)
    assert body["code"] == "rate_limited"
    assert response.headers["Retry-After"] == "7"
    assert body["retry_after_seconds"] == 7


async def test_401_challenges_for_a_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/private")
    problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_an_oversized_body_is_a_422_problem_by_length_or_by_streamed_count(tmp_path: Path) -> None:
    settings = KitSettings(service_name="kit-errors", var_dir=tmp_path, max_body_bytes=100)
    body = b'{"amount": "1", "items": []}' + b" " * 200

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 50):
            yield body[start : start + 50]

    async with in_process_client(create_demo_app(settings)) as client:
        for content in (body, chunks()):
            response = await client.post(
                "/v1/orders", content=content, headers={"content-type": "application/json"}
            )
            problem_body = problem(response, 422)
            assert problem_body["code"] == "body_too_large"
            assert problem_body["errors"][0]["field"] == "body"
            assert len(response.headers["X-Correlation-ID"]) == 32
        small = await client.post("/v1/orders", json={"amount": "1", "items": []})
        assert small.status_code == 201, small.text


def test_a_peers_contract_error_no_class_here_carries_comes_back_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """telegram-gateway does not declare order-api's errors again: a problem whose code is in the shared
    ``ErrorCode`` comes back as an error with that code, the peer's status and title, and the problem's fields."""
    monkeypatch.setattr(errors, "_registry", {})  # as in a process that imports none of the peer's classes
    made = errors.peer_error_class(
        ErrorCode.ORDER_ALREADY_TAKEN, status=409, title="Another operator has taken this order"
    )
    assert made is not None
    error = made.from_problem(
        {
            "type": "urn:exchange-desk:problem:order_already_taken",
            "title": "Another operator has taken this order",
            "status": 409,
            "detail": "Anna took it a minute ago.",
            "code": "order_already_taken",
            "held_by": {"operator_id": "op-1", "name": "Anna"},
        }
    )
    assert isinstance(error, errors.ConflictError)
    assert (error.code, error.status, error.title) == (
        ErrorCode.ORDER_ALREADY_TAKEN,
        409,
        "Another operator has taken this order",
    )
    assert error.detail == "Anna took it a minute ago."
    assert error.extra["held_by"] == {"operator_id": "op-1", "name": "Anna"}
    assert type(error).__name__ == "OrderAlreadyTakenError"
    assert errors.peer_error_class(ErrorCode.ORDER_ALREADY_TAKEN, status=409, title="") is made  # made once
    not_found = errors.peer_error_class(ErrorCode.ORDER_NOT_FOUND, status=404, title="Order not found")
    assert not_found is not None
    assert issubclass(not_found, errors.NotFoundError)


def test_a_code_outside_the_contract_or_a_server_error_is_not_made_into_a_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Those stay the client's ``PeerRejectedError`` and ``PeerUnavailableError``."""
    monkeypatch.setattr(errors, "_registry", {})
    assert errors.peer_error_class("made_up_by_the_peer", status=409, title="Whatever") is None
    assert errors.peer_error_class(ErrorCode.ORDER_NOT_FOUND, status=500, title="Order not found") is None
