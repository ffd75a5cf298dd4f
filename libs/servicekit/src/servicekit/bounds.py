"""Every input bounded to what the parser and the storage can hold, refused as a 422 problem naming its field.

- :class:`InputGuardMiddleware` refuses control characters in the path and the query (NUL and the other C0
  controls, DEL), NUL anywhere in a JSON body (PostgreSQL stores no NUL in text or JSON), and JSON nested
  deeper than ``max_depth`` (Python's parser would run out of stack long before the size limit is reached).
- :data:`RowIdPath` / :func:`row_id_path` bound an integer id to the range of the ``INTEGER`` columns that
  hold ids (PostgreSQL's int4; SQLite takes up to int64), so an id beyond it is a 422, not a driver error.
- :data:`DecimalString` is a decimal on the wire: a plain decimal string (never an exponent) in every answer,
  and a string with a pattern in the OpenAPI document, so a generated client keeps money exact (a JSON
  number is still accepted on input).
- :data:`ExactAmount` bounds a decimal to what ``servicekit.db.Money`` stores (digits and exponent checked
  from the digits given, before any arithmetic, so ``1E+1000000`` never reaches ``Decimal`` operations).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Path
from pydantic import Field, PlainSerializer, WithJsonSchema
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from desk_contracts.errors import ErrorCode
from servicekit.db import Money
from servicekit.errors import ValidationFailedError, problem_response

INT32_MAX = 2**31 - 1
"""The largest id an ``INTEGER`` column holds on PostgreSQL."""

MAX_JSON_DEPTH = 32
"""Default nesting limit of a JSON body (no API of the desk nests anywhere near it)."""

DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"
"""What a decimal string looks like: digits, at most one point, no exponent."""


def plain_decimal(value: Decimal) -> str:
    """``value`` as plain digits (``1E-8`` is ``0.00000001``)."""
    return format(value, "f")


DecimalString = Annotated[
    Decimal,
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": DECIMAL_PATTERN, "examples": ["0.05"]}),
]
"""A decimal sent and answered as a string (``"0.05"``); every decimal a route exposes is one."""

ExactAmount = Annotated[
    Decimal,
    PlainSerializer(plain_decimal, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": rf"^-?\d{{1,{Money.INTEGER_DIGITS}}}(\.\d{{1,{Money.SCALE}}})?$",
            "examples": ["0.05"],
        }
    ),
    Field(max_digits=Money.INTEGER_DIGITS + Money.SCALE, decimal_places=Money.SCALE, allow_inf_nan=False),
]
"""A finite decimal with at most as many digits (before and after the point) as ``Money`` stores; its schema's
pattern says so (a :data:`DecimalString` with bounded digits)."""


def row_id_path(description: str) -> Any:
    """A path parameter holding a row id: ``1`` to :data:`INT32_MAX`."""
    return Path(ge=1, le=INT32_MAX, description=description)


RowIdPath = Annotated[int, row_id_path("The row's id.")]


class ForbiddenCharacterError(ValidationFailedError):
    code = ErrorCode.FORBIDDEN_CHARACTER
    title = "The request contains a control character"


class JsonTooDeepError(ValidationFailedError):
    code = ErrorCode.JSON_TOO_DEEP
    title = "The request body is nested too deeply"


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_NUL = re.compile(rb"\x00|(?<!\\)(?:\\\\)*\\u0000")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def _json_depth_exceeds(body: bytes, max_depth: int) -> bool:
    if body.count(b"[") + body.count(b"{") <= max_depth:  # the usual case: nothing to walk
        return False
    depth = 0
    for match in _BRACKET.finditer(_JSON_STRING.sub(b'""', body)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _strings_with_nul(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """The dotted names of the fields (keys or values) of a parsed JSON document that hold a NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            yield ".".join(path) or "body"
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield ".".join(path) or "body"
            yield from _strings_with_nul(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_with_nul(item, (*path, str(index)))


def path_and_query_problem(scope: Scope) -> ValidationFailedError | None:
    """A problem naming the path or the query parameter that holds a control character, if any."""
    if _CONTROL.search(scope.get("path", "")):
        return ForbiddenCharacterError.for_field("path", "control characters are not allowed", kind="control")
    query = scope.get("query_string", b"")
    if query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if _CONTROL.search(name) or _CONTROL.search(value):
                field = _CONTROL.sub("?", name) or "query"
                return ForbiddenCharacterError.for_field(
                    field, "control characters are not allowed", kind="control"
                )
    return None


def json_body_problem(body: bytes, *, max_depth: int) -> ValidationFailedError | None:
    """A problem for a JSON body nested deeper than ``max_depth`` or holding a NUL (naming its fields)."""
    if _json_depth_exceeds(body, max_depth):
        return JsonTooDeepError.for_field("body", f"nested at most {max_depth} levels deep", kind="too_deep")
    if (b"\\u0000" not in body and b"\x00" not in body) or _JSON_NUL.search(body) is None:
        return None
    try:
        fields = list(dict.fromkeys(_strings_with_nul(json.loads(body)))) or ["body"]
    except ValueError:
        fields = ["body"]
    message = "NUL characters are not allowed"
    return ForbiddenCharacterError(
        f"{', '.join(fields)}: {message}",
        errors=[{"field": field, "message": message, "type": "control"} for field in fields],
    )


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type: bytes = value.split(b";", 1)[0].strip().lower()
            return media_type == b"application/json" or media_type.endswith(b"+json")
    return True  # no content type: parsers that assume JSON read it as JSON


class InputGuardMiddleware:
    """Refuses control characters in the path and the query, and NUL or excessive nesting in a JSON body,
    with a 422 problem naming the field, before routing and parsing. Sits inside the body-size limit, so the
    body it reads whole is already bounded."""

    def __init__(self, app: ASGIApp, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = path_and_query_problem(scope)
        if problem is None and scope["method"] in ("POST", "PUT", "PATCH") and _is_json(scope):
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left: let the app see it
                    await self.app(scope, _replay(b"".join(chunks), receive, first=message), send)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            problem = json_body_problem(body, max_depth=self.max_json_depth)
            receive = _replay(body, receive)
        if problem is not None:
            await problem_response(problem.to_problem(scope.get("path")))(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _replay(body: bytes, receive: Receive, *, first: Message | None = None) -> Receive:
    """A ``receive`` that hands out ``first`` (a disconnect) or else ``body`` once, then the original's
    messages."""
    pending: list[Message] = [first or {"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
