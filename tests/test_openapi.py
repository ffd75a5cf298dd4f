"""Every service publishes an OpenAPI document a frontend developer can generate a client from: it renders,
every operation has a summary and a short stable operationId, every error is a problem+json
``ProblemDetail`` (never FastAPI's ``HTTPValidationError``), money is a decimal string, every request body has
an example, response headers are documented, and what only peer services call is in the internal document,
not the public one."""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar

import httpx
import pytest
from fastapi import FastAPI
from fastapi.openapi.utils import get_fields_from_routes
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from servicekit.openapi import INTERNAL_OPENAPI_URL, QUIET_PATHS, documents_of, operations

SERVICES = ["order_api", "wallet_pool", "notifier", "telegram_gateway"]
OPERATIONS_PATHS = ("/health/", "/metrics")
OPERATION_ID = re.compile(r"^[a-z][a-zA-Z0-9]{2,29}$")
PROBLEM_REF = "#/components/schemas/ProblemDetail"
INTERNAL_PATHS = {
    "order_api": {
        "/v1/events",
        "/v1/events/batch",
        "/v1/telegram/links",
        "/v1/telegram/operators/{telegram_user_id}",
    },
    "wallet_pool": {
        "/v1/events",
        "/v1/events/batch",
        "/v1/allocations",
        "/v1/allocations/{order_id}",
        "/v1/allocations/{order_id}/release",
    },
    "notifier": {"/v1/events", "/v1/events/batch"},
    "telegram_gateway": {"/v1/messages"},
}


def build_app(package: str, var_dir: Path) -> Any:
    main = importlib.import_module(f"{package}.main")
    settings_module = importlib.import_module(f"{package}.settings")
    return main.create_app(settings_module.Settings(var_dir=var_dir))


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, FastAPI]:
    return {package: build_app(package, tmp_path_factory.mktemp(package)) for package in SERVICES}


@pytest.fixture(scope="module")
def documents(apps: dict[str, FastAPI]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Each service's public and internal document."""
    return {package: (app.openapi(), documents_of(app).internal()) for package, app in apps.items()}


@pytest.mark.parametrize("package", SERVICES)
async def test_each_service_serves_both_documents(
    package: str, documents: dict[str, tuple[dict[str, Any], dict[str, Any]]], tmp_path: Path
) -> None:
    app = build_app(package, tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        public = await client.get("/openapi.json")
        internal = await client.get(INTERNAL_OPENAPI_URL)
    assert public.status_code == 200, public.text
    assert internal.status_code == 200, internal.text
    assert (public.json(), internal.json()) == documents[package]


def both(documents: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for package, (public, internal) in documents.items():
        yield package, public
        yield f"{package} (internal)", internal


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("package", SERVICES)
async def test_the_openapi_document_describes_every_route_and_its_errors(
    package: str, documents: dict[str, tuple[dict[str, Any], dict[str, Any]]]
) -> None:
    public, internal = documents[package]
    assert public["info"]["title"].startswith("Exchange Desk")
    assert public["info"]["description"].strip()
    for document in (public, internal):
        for path, method, operation in operations(document):
            assert operation.get("summary"), f"{method.upper()} {path} has no summary"
            if path.startswith(OPERATIONS_PATHS):
                continue
            problems = [
                status
                for status, response in operation["responses"].items()
                if status.startswith(("4", "5")) and "application/problem+json" in response.get("content", {})
            ]
            assert problems, f"{method.upper()} {path} declares no problem+json error response"


def test_errors_are_declared_as_problem_json_only_and_never_as_fastapis_validation_error(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    for name, document in both(documents):
        text = repr(document)
        assert "HTTPValidationError" not in text, name
        assert "#/components/schemas/ValidationError" not in text, name
        for path, method, operation in operations(document):
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")) or path.startswith(OPERATIONS_PATHS):
                    continue
                where = f"{name} {method.upper()} {path} {status}"
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": PROBLEM_REF}}
                }, where
    problem = documents["order_api"][0]["components"]["schemas"]["ProblemDetail"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert problem["additionalProperties"] is True  # retry_after_seconds, order_status … reach the client
    field_error = resolve(documents["order_api"][0], problem["properties"]["errors"]["anyOf"][0]["items"])
    assert set(field_error["required"]) == {"field", "message", "type"}


async def test_a_real_422_matches_the_problem_schema_the_document_declares(tmp_path: Path) -> None:
    """What the server really sends for a failing field is what ``ProblemDetail.errors[]`` declares."""
    app = build_app("order_api", tmp_path)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        document = (await client.get("/openapi.json")).json()
        answer = await client.post("/v1/orders", json={"email": "not-an-email"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["x-correlation-id"]
    problem = document["components"]["schemas"]["ProblemDetail"]
    field_error = document["components"]["schemas"]["ProblemFieldError"]
    body = answer.json()
    assert set(problem["required"]) <= set(body)
    assert body["errors"], body
    for entry in body["errors"]:
        assert set(entry) == set(field_error["properties"]), entry
    assert "amount" in {entry["field"] for entry in body["errors"]}


def test_every_operation_has_a_short_unique_camel_case_operation_id(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    for package, (public, internal) in documents.items():
        ids = [
            operation.get("operationId", "")
            for doc in (public, internal)
            for _p, _m, operation in operations(doc)
        ]
        assert [i for i in ids if not OPERATION_ID.match(i)] == [], package
        assert len(ids) == len(set(ids)), f"{package}: {sorted(ids)}"
    order_api = {op["operationId"]: (m, p) for p, m, op in operations(documents["order_api"][0])}
    assert order_api["createOrder"] == ("post", "/v1/orders")
    assert order_api["getOrder"] == ("get", "/v1/orders/{order_id}")
    assert order_api["listOrders"] == ("get", "/v1/orders")
    assert order_api["cancelOrder"] == ("post", "/v1/orders/{order_id}/cancel")
    assert order_api["listOperatorOrders"] == ("get", "/v1/operator/orders")
    assert order_api["takeOrder"] == ("post", "/v1/operator/orders/{order_id}/take")


def test_security_is_declared_as_it_is_order_creation_works_without_a_session(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    paths = documents["order_api"][0]["paths"]
    assert {} in paths["/v1/orders"]["post"]["security"]
    assert {"CustomerSession": []} in paths["/v1/orders"]["post"]["security"]
    for path, method in (
        ("/v1/orders", "get"),
        ("/v1/orders/{order_id}", "get"),
        ("/v1/orders/{order_id}/cancel", "post"),
    ):
        assert paths[path][method]["security"] == [{"CustomerSession": []}], (method, path)


def test_money_is_a_decimal_string_with_a_pattern(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    """A Decimal left as pydantic's default is ``number | string`` on input (a float in generated clients)
    and a bare string on output; every amount is a string with a pattern, in requests and answers."""
    amounts = 0
    for name, document in both(documents):
        for schema in walk(document):
            variants = schema.get("anyOf", [])
            assert not any(v.get("type") == "number" for v in variants) or not any(
                v.get("type") == "string" for v in variants
            ), f"{name}: number | string: {schema}"
            for field, sub in {
                **schema.get("properties", {}),
                **{p["name"]: p["schema"] for p in schema.get("parameters", []) if "schema" in p},
            }.items():
                if "amount" not in field:
                    continue
                amounts += 1
                strings = [v for v in [sub, *sub.get("anyOf", [])] if v.get("type") == "string"]
                assert strings, f"{name}: {field}: {sub}"
                for string in strings:
                    assert re.match(string.get("pattern", ""), "0.05"), f"{name}: {field}: {sub}"
                    assert not re.match(string["pattern"], "5e-2"), f"{name}: {field}: {sub}"
    assert amounts >= 8  # order create/read/created, operator reads, the operators' amount filters


class BareDecimals(GenerateJsonSchema):
    """Records where pydantic's own decimal schema (``number | string``, or a bare string) is used: a
    ``DecimalString`` brings its own, so only a plain ``Decimal`` reaches this."""

    found: ClassVar[list[str]] = []
    current: ClassVar[str] = ""

    def decimal_schema(self, schema: Any) -> Any:
        self.found.append(self.current)
        return super().decimal_schema(schema)


def test_no_route_takes_or_answers_a_decimal_that_is_not_a_decimal_string(apps: dict[str, FastAPI]) -> None:
    """Every field of every request and response model, every parameter: a Decimal anywhere is a
    ``servicekit.bounds.DecimalString`` (which the document shows as a string with a pattern)."""
    BareDecimals.found.clear()
    for package, app in apps.items():
        for field in get_fields_from_routes(app.routes):
            info = field.field_info
            annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
            for mode in ("validation", "serialization"):
                BareDecimals.current = f"{package} {field.name} ({mode})"
                TypeAdapter(annotation).json_schema(schema_generator=BareDecimals, mode=mode)
    assert BareDecimals.found == []


def test_every_request_body_has_an_example(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    for name, document in both(documents):
        for path, method, operation in operations(document):
            for media in operation.get("requestBody", {}).get("content", {}).values():
                schema = media.get("schema", {})
                candidates = [
                    media,
                    schema,
                    *(resolve(document, s) for s in [schema, *schema.get("anyOf", [])]),
                ]
                assert any("example" in c or "examples" in c for c in candidates), (
                    f"{name} {method.upper()} {path} has no request example"
                )


def test_response_headers_are_documented(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    for name, document in both(documents):
        defined = document["components"]["headers"]
        for path, method, operation in operations(document):
            for status, response in operation["responses"].items():
                where = f"{name} {method.upper()} {path} {status}"
                # what the server sends: the probes and /metrics are not traced, and readiness's own 503
                # report (not a problem) names no time to retry
                traced = path not in QUIET_PATHS
                assert ("X-Correlation-ID" in response.get("headers", {})) is traced, where
                if status in ("429", "503"):
                    problem = "application/problem+json" in response.get("content", {})
                    assert ("Retry-After" in response["headers"]) is problem, where
                if status == "401":
                    assert "WWW-Authenticate" in response["headers"], where
                for header in response["headers"].values():  # declared inline, or a reference that resolves
                    assert (
                        "schema" in header or header["$ref"].removeprefix("#/components/headers/") in defined
                    ), where
    created = documents["order_api"][0]["paths"]["/v1/orders"]["post"]["responses"]
    assert "Retry-After" in created["409"]["headers"]  # the same Idempotency-Key still running


def test_the_public_document_hides_the_gateway_header_and_what_only_peers_call(
    documents: dict[str, tuple[dict[str, Any], dict[str, Any]]],
) -> None:
    for package, (public, internal) in documents.items():
        assert "X-Operator-Telegram-Id" not in repr(public), package
        assert set(public["paths"]).isdisjoint(INTERNAL_PATHS[package]), package
        assert set(internal["paths"]) == INTERNAL_PATHS[package], package
        assert "x-internal" not in repr(public), package
        # each document carries exactly the schemas its operations use
        assert "EventEnvelope" not in public["components"]["schemas"], package
        if package != "telegram_gateway":
            assert "EventEnvelope" in internal["components"]["schemas"], package
