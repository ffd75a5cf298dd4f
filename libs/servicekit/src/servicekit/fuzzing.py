"""A property-based test of a service's public routes: requests generated from its OpenAPI document
(schemathesis, on hypothesis), within the schema and outside it, with hostile values mixed in (huge numbers,
exponents, NUL and other controls, odd unicode, empty and oversized strings, deeply nested JSON), sent as each
caller given (with valid keys or tokens, and without). No answer may be a 5xx.

The app runs in the test's event loop (``servicekit.testing.running_app``); hypothesis drives it from a worker
thread, one request at a time. Examples are derandomized: the same inputs every run, so CI is not flaky.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

log = logging.getLogger("servicekit.fuzzing")

HOSTILE_VALUES: tuple[Any, ...] = (
    "\x00",
    "a\x00b",
    "\x1f\x7f\n",
    "",
    " ",
    "x" * 5_000,
    "🦀\u202e\ufeff\u0301",
    "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    "1E+1000000",
    "1e999999999",
    "-1E-1000000",
    "NaN",
    "9996991461559242220549588385792",
    2**31,
    2**63,
    10**40,
    -(10**40),
    1e308,
    0,
    -1,
    "%00",
    "../../etc/passwd",
    [],
    {},
)


@dataclass(frozen=True)
class DeepJson:
    """A JSON body nested ``depth`` arrays deep (written out by hand: ``json.dumps`` would recurse too deep)."""

    depth: int

    def encode(self) -> bytes:
        return b"[" * self.depth + b'"x"' + b"]" * self.depth


@dataclass(frozen=True)
class ServerError:
    caller: str
    method: str
    path: str
    status: int
    request: str

    def __str__(self) -> str:
        return f"{self.status} for {self.method} {self.path} as {self.caller}: {self.request}"


def _hostile(case: Any, data: st.DataObject) -> None:
    """Put a hostile value in one place of ``case``: a path parameter, a query parameter or a body field (or
    the whole body: deep JSON)."""
    places: list[tuple[str, str | None]] = [("path", name) for name in case.path_parameters or {}]
    places += [("query", name) for name in case.query or {}]
    if isinstance(case.body, dict):
        places += [("body", name) for name in case.body]
    if case.media_type is not None:
        places.append(("body", None))
    if not places:
        return
    where, name = data.draw(st.sampled_from(places))
    if where == "body" and name is None:
        case.body = data.draw(st.sampled_from([DeepJson(50_000), DeepJson(40), "\x00", 10**400]))
        return
    value = data.draw(st.sampled_from(HOSTILE_VALUES))
    if where == "path":
        case.path_parameters[name] = value if isinstance(value, str | int | float) else "x"
    elif where == "query":
        case.query[name] = value if isinstance(value, str | int | float) else ""
    else:
        case.body[name] = value


def find_server_errors(
    client: httpx.AsyncClient,
    openapi: Mapping[str, Any],
    *,
    callers: Mapping[str, Mapping[str, str]],
    loop: asyncio.AbstractEventLoop,
    max_examples: int,
    skip_paths: Collection[str] = (),
    peers_down: bool = False,
) -> list[ServerError]:
    """Run in a worker thread: every operation of ``openapi`` (but ``skip_paths``) fuzzed ``max_examples``
    times, each request sent as one of ``callers`` (name: its headers) through ``client`` on ``loop``.
    ``peers_down``: the test left the service's peers unreachable, so a ``503 peer_unavailable`` is right."""
    schema = schemathesis.openapi.from_dict(dict(openapi))
    errors: list[ServerError] = []
    sent: dict[str, int] = {}
    names = sorted(callers)
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            continue
        operation = result.ok()
        if operation.path in skip_paths:
            continue
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)
        )

        @settings(
            max_examples=max_examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, caller=st.sampled_from(names), hostile=st.booleans(), data=st.data())
        def check(case: Any, caller: str, hostile: bool, data: st.DataObject) -> None:
            if hostile:
                _hostile(case, data)
            request = _request_of(case, callers[caller])
            response = asyncio.run_coroutine_threadsafe(client.request(**request), loop).result()
            sent[case.operation.label] = sent.get(case.operation.label, 0) + 1
            if response.status_code >= 500 and not (peers_down and _peer_unavailable(response)):
                errors.append(
                    ServerError(
                        caller, case.method, request["url"], response.status_code, repr(request)[:500]
                    )
                )

        check()
        if not sent.get(operation.label):
            raise AssertionError(f"{operation.label} was never fuzzed")
    log.info("fuzzed %d operations with %d requests", len(sent), sum(sent.values()))
    return errors


def _peer_unavailable(response: httpx.Response) -> bool:
    return response.status_code == 503 and response.json().get("code") == "peer_unavailable"


def _request_of(case: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "method": case.method,
        "url": _path_of(case),
        "headers": {
            **{k: str(v) for k, v in (case.headers or {}).items() if k.lower() != "authorization"},
            **headers,
        },
        "params": case.query or None,
    }
    body = case.body
    if isinstance(body, DeepJson):
        request["content"] = body.encode()
        request["headers"]["Content-Type"] = "application/json"
    elif not _not_set(body) and case.media_type is not None:
        if isinstance(body, bytes):  # a negative example: not JSON at all
            request["content"] = body
            request["headers"]["Content-Type"] = case.media_type
        elif "json" in case.media_type:
            request["json"] = body
        elif isinstance(body, str):
            request["content"] = body
            request["headers"]["Content-Type"] = case.media_type
    return request


def _path_of(case: Any) -> str:
    """The path with its parameters percent-encoded (as a client sends a NUL: ``%00``)."""
    path: str = case.path
    for name, value in (case.path_parameters or {}).items():
        path = path.replace(f"{{{name}}}", quote(str(value), safe=""))
    return path


def _not_set(value: Any) -> bool:
    return type(value).__name__ == "NotSet"


async def assert_no_server_errors(
    client: httpx.AsyncClient,
    openapi: Mapping[str, Any],
    *,
    callers: Mapping[str, Mapping[str, str]],
    max_examples: int = 15,
    skip_paths: Sequence[str] = (),
    peers_down: bool = False,
) -> None:
    """Fuzz every operation of ``openapi`` through ``client`` (an app running in this loop); fail listing
    every 5xx."""
    loop = asyncio.get_running_loop()
    errors = await asyncio.to_thread(
        find_server_errors,
        client,
        openapi,
        callers=callers,
        loop=loop,
        max_examples=max_examples,
        skip_paths=skip_paths,
        peers_down=peers_down,
    )
    if errors:
        raise AssertionError(f"{len(errors)} server errors:\n" + "\n".join(map(str, errors[:20])))
