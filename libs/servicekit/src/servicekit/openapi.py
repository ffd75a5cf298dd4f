"""The OpenAPI documents a service publishes, shaped for client generators.

FastAPI's document is reworked once per app (:func:`install_openapi`, :class:`OpenApiDocuments`):

- every error response (4xx, 5xx) is declared under ``application/problem+json`` with :class:`ProblemDetail`,
  what the error handlers really send (``servicekit.errors``); FastAPI's default ``422``
  (``HTTPValidationError``) becomes the same problem, and its schemas are gone;
- every response documents ``X-Correlation-ID``, ``429`` and ``503`` document ``Retry-After``, ``401``
  ``WWW-Authenticate``;
- routes only peer services call (``openapi_extra=INTERNAL``: the event receivers, the Telegram gateway's
  link routes …) leave the public ``/openapi.json`` for ``/openapi.internal.json``, served under the same docs
  setting: a website's generated client has no method it may not call, and a peer's developer still finds
  the contract.

What stays with each route: a short camelCase ``operation_id``, its ``summary``, its problem statuses
(``problem_responses``), a request-body example on the body model, and ``ANONYMOUS_ALLOWED`` where a
credential is optional.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from servicekit.errors import PROBLEM_JSON, RETRY_AFTER_HEADER

INTERNAL_OPENAPI_URL = "/openapi.internal.json"
INTERNAL: dict[str, Any] = {"x-internal": True}
"""``openapi_extra`` of a route only peer services call: it is in the internal document, not the public one."""
ANONYMOUS_ALLOWED: dict[str, Any] = {"security": [{}]}
"""``openapi_extra`` of a route whose credential is optional: its security becomes "this, or nothing"."""

QUIET_PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})
"""The probes and ``/metrics``: asked all the time, neither logged nor traced by default, so their answers
carry no ``X-Correlation-ID`` (``servicekit.metrics`` leaves them out of the access log)."""

PROBLEM_SCHEMA = "ProblemDetail"
_REF = "#/components/schemas/"
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_HEADERS: dict[str, dict[str, Any]] = {
    "X-Correlation-ID": {
        "description": "The request's trace id, continuing the caller's W3C `traceparent` when it sent one: "
        "it finds the request in the desk's logs and traces, so quote it when reporting a problem. (Health "
        "probes and `/metrics` are not traced and carry none.)",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "ETag": {
        "description": "The version of the answer (for `If-None-Match`).",
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {
        "description": "`Bearer`: send a credential as `Authorization: Bearer <token>`.",
        "schema": {"type": "string"},
    },
}
RETRY_AFTER_STATUSES = ("429", "503")
ETAG_HEADER = {"ETag": {"$ref": "#/components/headers/ETag"}}
"""A response's ``headers`` entry for an answer sent with ``ETag``: ``responses={200: {"headers": ETAG_HEADER}}``."""


class OpenApiDocuments:
    """The documents of one app, made from FastAPI's once (again only if its routes change)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._generated: dict[str, Any] | None = None
        self._shaped: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})

    def _documents(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        generated = FastAPI.openapi(self.app)  # FastAPI's own, cached by the app
        if self._generated is not generated:
            complete = shape_document(generated)
            self._shaped = (
                complete,
                select_operations(complete, internal=False),
                select_operations(complete, internal=True),
            )
            self._generated = generated
        return self._shaped

    def complete(self) -> dict[str, Any]:
        """Every operation, public and internal (what the fuzz tests and the inventory check read)."""
        return self._documents()[0]

    def public(self) -> dict[str, Any]:
        """``/openapi.json``: what a website or another client may call."""
        return self._documents()[1]

    def internal(self) -> dict[str, Any]:
        """``/openapi.internal.json``: the routes only the desk's own services call."""
        return self._documents()[2]


def install_openapi(app: FastAPI) -> OpenApiDocuments:
    """Make ``app.openapi()`` (and so ``/openapi.json``) the public document, and serve the internal one
    beside it when the app serves documents at all."""
    documents = OpenApiDocuments(app)
    app.openapi = documents.public  # type: ignore[method-assign]
    if app.openapi_url:

        async def internal_openapi(request: Request) -> JSONResponse:
            return JSONResponse(documents.internal())

        app.add_route(INTERNAL_OPENAPI_URL, internal_openapi, include_in_schema=False)
    return documents


def documents_of(app: FastAPI) -> OpenApiDocuments:
    """The documents :func:`install_openapi` set up for ``app``."""
    owner = getattr(app.openapi, "__self__", None)
    if not isinstance(owner, OpenApiDocuments):
        raise LookupError("install_openapi(app) was not called")
    return owner


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(path, method, operation)`` of every operation of ``document``."""
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            yield path, method, operation


def shape_document(generated: dict[str, Any]) -> dict[str, Any]:
    """FastAPI's document, its errors declared as problems and its response headers documented."""
    document = copy.deepcopy(generated)
    for path, _method, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            problem = status[0] in "45" and _is_problem(response)
            if problem:
                response["content"] = {PROBLEM_JSON: {"schema": {"$ref": _REF + PROBLEM_SCHEMA}}}
            headers = response.setdefault("headers", {})
            if path not in QUIET_PATHS:  # the probes and /metrics are not traced: no correlation id
                headers.setdefault("X-Correlation-ID", {"$ref": "#/components/headers/X-Correlation-ID"})
            if status in RETRY_AFTER_STATUSES and problem:  # readiness's own 503 report sends none
                headers.update(RETRY_AFTER_HEADER)
            if status == "401":
                headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    components.setdefault("headers", {}).update(copy.deepcopy(_HEADERS))
    return document


def _is_problem(response: dict[str, Any]) -> bool:
    """An error response the problem handlers send: declared with ``ProblemDetail``, FastAPI's default
    ``422``, or a bare problem+json (not, say, readiness's ``503`` report)."""
    content = response.get("content")
    if not content:
        return True
    text = repr(content)
    return PROBLEM_JSON in content or any(
        _REF + name in text for name in (PROBLEM_SCHEMA, *_FASTAPI_VALIDATION_SCHEMAS)
    )


def select_operations(document: dict[str, Any], *, internal: bool) -> dict[str, Any]:
    """The operations of ``document`` marked internal (or not), with only the components they reach."""
    selected = copy.deepcopy(document)
    paths: dict[str, Any] = {}
    for path, method, operation in operations(document):
        if bool(operation.get("x-internal")) == internal:
            paths.setdefault(path, {})[method] = copy.deepcopy(operation)
    selected["paths"] = paths
    if internal:
        selected["info"] = {
            **selected["info"],
            "title": f"{selected['info']['title']} (internal)",
            "description": "Routes only the desk's own services call. Not for websites or other clients.",
        }
    components = selected.get("components", {})
    reached = _reached_components(paths, components)
    for kind in ("schemas", "headers"):
        if kind in components:
            components[kind] = {n: s for n, s in components[kind].items() if f"{kind}/{n}" in reached}
    used_tags = {tag for _p, _m, op in operations(selected) for tag in op.get("tags", [])}
    if "tags" in selected:
        selected["tags"] = [tag for tag in selected["tags"] if tag["name"] in used_tags]
    return selected


def _reached_components(root: Any, components: dict[str, Any]) -> set[str]:
    """``kind/name`` of every component ``root`` refers to, directly or through others."""
    reached: set[str] = set()
    pending = [root]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/"):
                key = ref.removeprefix("#/components/")
                if key not in reached:
                    reached.add(key)
                    kind, _, name = key.partition("/")
                    pending.append(components.get(kind, {}).get(name))
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return reached
