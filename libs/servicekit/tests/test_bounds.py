"""The input guard of every service: control characters in the path and the query, NUL in a JSON body and deep
nesting are 422 problems naming the field, before routing; what is legitimate passes untouched."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from servicekit.bounds import ExactAmount, json_body_problem
from servicekit.errors import PROBLEM_JSON
from servicekit.testing.kitapps import KitSettings, create_demo_app, in_process_client


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = KitSettings(service_name="kit-bounds", var_dir=tmp_path, max_json_depth=8)
    async with in_process_client(create_demo_app(settings)) as client:
        yield client


def refused(response: httpx.Response, code: str) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return [error["field"] for error in body["errors"]]


async def test_control_characters_in_the_path_or_the_query_are_refused(client: httpx.AsyncClient) -> None:
    assert refused(await client.get("/v1/items/a%00b"), "forbidden_character") == ["path"]
    assert refused(await client.get("/v1/items/a%0Ab"), "forbidden_character") == ["path"]
    assert refused(await client.get("/v1/items/a", params={"q": "x\x00"}), "forbidden_character") == ["q"]
    assert refused(await client.get("/v1/items/a?x%01y=1"), "forbidden_character") == ["x?y"]
    assert (await client.get("/v1/items/caf%C3%A9", params={"q": "ünïcode ok"})).status_code == 200


async def test_nul_in_a_json_body_is_refused_naming_each_field(client: httpx.AsyncClient) -> None:
    body = {"amount": "1", "items": [{"sku": "a\x00", "price": "1"}, {"sku": "b", "price": "1"}]}
    assert refused(await client.post("/v1/orders", json=body), "forbidden_character") == ["items.0.sku"]
    raw = b'{"amount": "1", "items": [], "\\u0000": 1}'
    answer = await client.post("/v1/orders", content=raw, headers={"Content-Type": "application/json"})
    assert refused(answer, "forbidden_character") == ["body"]
    # A backslash followed by the text "u0000" is no NUL; newlines and tabs in strings are fine.
    ok = {"amount": "1", "items": [{"sku": "\\u0000\n\t", "price": "1"}]}
    assert (await client.post("/v1/orders", json=ok)).status_code == 201


async def test_json_nested_deeper_than_the_limit_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    deep = b"[" * 9 + b"]" * 9
    answer = await client.post("/v1/orders", content=deep, headers={"Content-Type": "application/json"})
    assert refused(answer, "json_too_deep") == ["body"]
    no_content_type = await client.post("/v1/orders", content=b"[" * 100_000)
    assert refused(no_content_type, "json_too_deep") == ["body"]
    # Brackets inside strings are text, not nesting.
    body = {"amount": "1", "items": [{"sku": "[[[[[[[[[[{{{{{{{{", "price": "1"}]}
    assert (await client.post("/v1/orders", json=body)).status_code == 201


def test_the_depth_of_a_document_is_counted_outside_its_strings() -> None:
    assert json_body_problem(json.dumps([[[["x"]]]]).encode(), max_depth=4) is None
    assert json_body_problem(json.dumps([[[[["x"]]]]]).encode(), max_depth=4) is not None
    assert json_body_problem(json.dumps({"a": '"]]]]][[[[[[[\\"'}).encode(), max_depth=1) is None


def test_an_exact_amounts_schema_states_the_digits_it_accepts() -> None:
    """A client generated from the document refuses what the server would: at most 20 digits before the point
    and 18 after."""
    adapter = TypeAdapter(ExactAmount)
    pattern = re.compile(adapter.json_schema()["pattern"])
    for fits in ("0.05", "9" * 20, "1." + "1" * 18, "9" * 20 + "." + "9" * 18):
        assert pattern.match(fits), fits
        assert str(adapter.validate_python(fits)) == fits
    for too_long in ("9" * 21, "1." + "1" * 19, "1e5", ".5"):
        assert not pattern.match(too_long), too_long
    for refused in ("9" * 21, "1." + "1" * 19):
        with pytest.raises(ValidationError):
            adapter.validate_python(refused)
