"""Typed domain errors and their ``application/problem+json`` (RFC 9457) rendering.

A service raises a subclass of :class:`DomainError` with a stable ``code``; one handler per app renders it.
Every subclass registers itself by code, so the service client can turn a peer's problem document back into
the same typed error on the calling side. Validation errors share the shape and list each failing field in
``errors[]``; anything unexpected is a bare ``500`` with no stack trace or SQL in the body.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from desk_contracts.errors import ErrorCode
from servicekit.backing import BACKING_STORE_ERRORS, BACKING_STORE_RETRY_AFTER_SECONDS, describe, is_outage

PROBLEM_JSON = "application/problem+json"
PEER_RETRY_AFTER_SECONDS = 5
"""The ``Retry-After`` of a call that failed because a peer did: this service's own, whatever the peer said."""
log = logging.getLogger("servicekit.errors")

_registry: dict[str, type[DomainError]] = {}
RESERVED_PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "code", "instance"})


class DomainError(Exception):
    """Base of every error a service raises on purpose. Subclasses set ``status``, ``code`` and ``title``."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = ErrorCode.BAD_REQUEST
    title: ClassVar[str] = "Bad request"
    #: The peer service this error came from (set by the service client). Such an error is for this
    #: service's code to handle; if it reaches a route's caller, it is answered as this service's own
    #: ``peer_unavailable``, never with the peer's status, detail or ``Retry-After`` (a ``PeerRejectedError``,
    #: this service's own failure told in its own words, is answered as itself).
    peer: str | None = None

    def __init__(self, detail: str | None = None, *, extra: Mapping[str, Any] | None = None) -> None:
        self.detail = detail or self.title
        self.extra: dict[str, Any] = dict(extra or {})
        super().__init__(self.detail)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _registry.setdefault(cls.code, cls)

    @classmethod
    def from_problem(cls, problem: Mapping[str, Any]) -> DomainError:
        """Rebuild this error from a peer's problem document (the reverse of :meth:`to_problem`)."""
        known = {"type", "title", "status", "detail", "code", "instance"}
        error = cls.__new__(cls)
        DomainError.__init__(
            error, problem.get("detail"), extra={k: v for k, v in problem.items() if k not in known}
        )
        for key, value in error.extra.items():
            if key.isidentifier() and not hasattr(error, key):
                setattr(error, key, value)
        return error

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"urn:exchange-desk:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update((k, v) for k, v in self.extra.items() if k not in RESERVED_PROBLEM_FIELDS)
        return body


def peer_error_class(code: str, *, status: int, title: str) -> type[DomainError] | None:
    """The class a peer's ``4xx`` problem is rebuilt as: the one registered for ``code``, or, for a code of
    the shared contract (``desk_contracts.errors.ErrorCode``) that no class of this process carries, one made
    from the problem's status and title. A caller therefore matches a peer's error on ``error.code``, with
    its fields in ``error.extra``, without declaring the peer's error classes a second time."""
    known = _registry.get(code)
    if known is not None or code not in _CONTRACT_CODES or not 400 <= status < 500:
        return known
    base = _BASE_BY_STATUS.get(status, DomainError)
    name = "".join(word.capitalize() for word in code.split("_")) + "Error"
    # Made once per code: the new class registers itself (``__init_subclass__``), so the next answer finds it.
    return type(name, (base,), {"code": ErrorCode(code), "status": status, "title": title or base.title})


class NotFoundError(DomainError):
    status = 404
    code = ErrorCode.NOT_FOUND
    title = "Not found"


class ConflictError(DomainError):
    status = 409
    code = ErrorCode.CONFLICT
    title = "Conflict"


class ValidationFailedError(DomainError):
    """Raised by service code for a field-level problem the schema could not catch."""

    status = 422
    code = ErrorCode.VALIDATION_FAILED
    title = "The request is not valid"

    def __init__(self, detail: str | None = None, *, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(detail, extra={"errors": [dict(e) for e in errors]})

    @classmethod
    def for_field(cls, field: str, message: str, *, kind: str = "invalid") -> ValidationFailedError:
        return cls(f"{field}: {message}", errors=[{"field": field, "message": message, "type": kind}])


class BodyTooLargeError(ValidationFailedError):
    code = ErrorCode.BODY_TOO_LARGE
    title = "The request body is too large"


class RateLimitedError(DomainError):
    status = 429
    code = ErrorCode.RATE_LIMITED
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after_seconds: int) -> None:
        super().__init__(detail, extra={"retry_after_seconds": retry_after_seconds})
        self.retry_after_seconds = retry_after_seconds


class PeerUnavailableError(DomainError):
    """A peer service could not be reached or answered with a server error."""

    status = 503
    code = ErrorCode.PEER_UNAVAILABLE
    title = "A service this call depends on is unavailable"


class BackingStoreUnavailableError(DomainError):
    """PostgreSQL or Redis cannot serve this request right now (unreachable, its connection lost, no pooled
    connection free in time): nothing was done, and trying again shortly will do."""

    status = 503
    code = ErrorCode.BACKING_STORE_UNAVAILABLE
    title = "A data store this service depends on is unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            detail or "A data store this service depends on is unavailable; try again shortly.",
            extra={"retry_after_seconds": BACKING_STORE_RETRY_AFTER_SECONDS},
        )
        self.retry_after_seconds = BACKING_STORE_RETRY_AFTER_SECONDS


class PeerAnswerInvalidError(PeerUnavailableError):
    """A peer answered, but not with anything this service can use (too large, not the expected shape, or
    content that fails its checks): treated like no answer at all."""

    code = ErrorCode.PEER_ANSWER_INVALID
    title = "A service this call depends on gave an answer that cannot be used"

    @classmethod
    def of(cls, peer: str, reason: str, **extra: Any) -> PeerAnswerInvalidError:
        """The error for an answer of ``peer`` that cannot be used; ``reason`` is for the log."""
        error = cls(f"{peer} gave an answer that cannot be used: {reason}", extra={"peer": peer, **extra})
        error.peer = peer
        return error


class PeerRejectedError(DomainError):
    """A peer refused our own credentials or request in a way this process has no typed error for. Unlike a
    peer's own error, it reaches the caller (``502``): it is this service's failure, told in its own words
    (the peer's name, status and code; what the peer wrote is logged, never shown)."""

    status = 502
    code = ErrorCode.PEER_REJECTED
    title = "A service this call depends on refused the request"


class ProblemFieldError(BaseModel):
    """One failing field of a validation problem."""

    field: str = Field(
        description="The field, dotted for a nested one (`items.0.address`), or a header's name, or `body`.",
        examples=["amount"],
    )
    message: str = Field(description="What is wrong with it, for a person.", examples=["Field required"])
    type: str = Field(
        description="A short machine-readable kind (`missing`, `invalid` …).", examples=["missing"]
    )


class ProblemDetail(BaseModel):
    """An RFC 9457 problem document, as every error of this API is rendered (``application/problem+json``).
    Some problems carry more fields (``retry_after_seconds``, ``order_status`` …), named in the route's
    description."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="A URN naming the problem: `urn:exchange-desk:problem:<code>`.",
        examples=["urn:exchange-desk:problem:not_found"],
    )
    title: str = Field(description="A short summary of the problem type.", examples=["Not found"])
    status: int = Field(description="The HTTP status.", examples=[404])
    detail: str = Field(description="What went wrong with this request, for a person.")
    code: str = Field(description="Stable machine-readable error code.", examples=["not_found"])
    instance: str | None = Field(default=None, description="The path the problem was answered for.")
    errors: list[ProblemFieldError] | None = Field(
        default=None, description="For validation problems: one entry per failing field."
    )


RETRY_AFTER_HEADER = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
"""A response's ``headers`` entry documenting ``Retry-After`` (the document defines the header once)."""


def problem_responses(*statuses: int, retry_after: Collection[int] = ()) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries declaring problem+json bodies for the given statuses (the document
    declares them under ``application/problem+json`` only: ``servicekit.openapi``). ``retry_after``: the
    statuses besides ``429`` and ``503`` that send ``Retry-After``."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ProblemDetail, "content": {PROBLEM_JSON: {}}, "description": _status_text(status)}
        for status in statuses
    }
    for status in retry_after:
        responses[status]["headers"] = dict(RETRY_AFTER_HEADER)
    return responses


def _status_text(status: int) -> str:
    return HTTPStatus(status).phrase


class BodySizeLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with a 422 problem naming ``body``, before any parsing.

    Checks ``Content-Length`` up front (the server then delivers exactly that many bytes, so nothing more is
    counted) and counts streamed (chunked) bodies as they arrive. FastAPI turns an error raised while it
    reads the body into a 400, so an overrun is remembered and the problem replaces whatever response the
    app starts.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _problem(self, scope: Scope) -> JSONResponse:
        error = BodyTooLargeError(
            f"The request body exceeds {self.max_bytes} bytes.",
            errors=[{"field": "body", "message": f"at most {self.max_bytes} bytes", "type": "too_large"}],
        )
        return problem_response(error.to_problem(scope.get("path")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > self.max_bytes:
                    await self._problem(scope)(scope, receive, send)
                else:
                    await self.app(scope, receive, send)
                return
        received = 0
        exceeded = started = replaced = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def replacing_send(message: Message) -> None:
            nonlocal started, replaced
            if message["type"] == "http.response.start" and not started:
                started = True
                if exceeded:
                    replaced = True
                    await self._problem(scope)(scope, receive, send)
            if not replaced:
                await send(message)

        try:
            await self.app(scope, counting_receive, replacing_send)
        except _BodyTooLarge:
            if started:
                raise
            await self._problem(scope)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _peer_failure(request: Request, exc: DomainError) -> JSONResponse:
    """A peer's error that no code handled: logged as the peer wrote it, answered as this service's own."""
    log.warning(
        "a peer's error reached the caller; answered as peer_unavailable",
        extra={
            "peer": exc.peer,
            "peer_error": type(exc).__name__,
            "peer_code": exc.code,
            "peer_detail": exc.detail[:300],
            "path": request.url.path,
        },
    )
    own = PeerUnavailableError(
        "A service this call depends on is unavailable; try again later.",
        extra={"retry_after_seconds": PEER_RETRY_AFTER_SECONDS},
    )
    return problem_response(own.to_problem(request.url.path), {"Retry-After": str(PEER_RETRY_AFTER_SECONDS)})


def problem_response(body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(dict(body), status_code=int(body["status"]), media_type=PROBLEM_JSON, headers=headers)


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:] or parts
    return ".".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` as problem+json."""

    async def on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
        headers = None
        if exc.peer is not None and not isinstance(exc, PeerRejectedError):
            return _peer_failure(request, exc)
        retry_after = exc.extra.get("retry_after_seconds")  # a rate limit, a request still running
        if isinstance(retry_after, int):
            headers = {"Retry-After": str(retry_after)}
        elif exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return problem_response(exc.to_problem(request.url.path), headers)

    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_name(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        problem = ValidationFailedError(f"Invalid fields: {fields}", errors=errors)
        return problem_response(problem.to_problem(request.url.path))

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        code = title.lower().replace(" ", "_").replace("-", "_")
        body = {
            "type": f"urn:exchange-desk:problem:{code}",
            "title": title,
            "status": exc.status_code,
            "detail": str(exc.detail) if exc.detail else title,
            "code": code,
            "instance": request.url.path,
        }
        return problem_response(body, getattr(exc, "headers", None))

    async def on_store_error(request: Request, exc: Exception) -> JSONResponse:
        """What a backing store raised: an outage is a ``503`` logged in one line; anything else is
        re-raised to ``on_unexpected`` (a bug stays a ``500``)."""
        if not is_outage(exc):
            raise exc
        log.warning(
            "a backing store is unavailable; answered 503",
            extra={"path": request.url.path, "error": describe(exc)},
        )
        problem = BackingStoreUnavailableError()
        return problem_response(
            problem.to_problem(request.url.path), {"Retry-After": str(problem.retry_after_seconds)}
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        body = {
            "type": "urn:exchange-desk:problem:internal_error",
            "title": "Internal server error",
            "status": 500,
            "detail": "Something went wrong on our side; the correlation id identifies it in our logs.",
            "code": "internal_error",
            "instance": request.url.path,
        }
        return problem_response(body)  # with X-Correlation-ID, like every response (servicekit.telemetry)

    app.add_exception_handler(DomainError, on_domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    for store_error in BACKING_STORE_ERRORS:
        app.add_exception_handler(store_error, on_store_error)
    app.add_exception_handler(Exception, on_unexpected)


_CONTRACT_CODES = frozenset(ErrorCode)
_BASE_BY_STATUS: dict[int, type[DomainError]] = {
    404: NotFoundError,
    409: ConflictError,
    422: ValidationFailedError,
}
"""The base a peer's error made by :func:`peer_error_class` gets, so ``except NotFoundError`` still works."""
