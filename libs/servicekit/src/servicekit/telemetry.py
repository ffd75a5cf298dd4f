"""Tracing and structured logs.

One OpenTelemetry trace follows an order across the services; its trace id is the **correlation id**:
it is on every JSON log line (``trace_id``, ``correlation_id``) and returned to every client in the
``X-Correlation-ID`` header. Spans are exported over OTLP only when an endpoint is configured. Sampling
(``trace_sample_ratio``), excluded paths and per-statement database spans are settings, because full
tracing is not free.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Token
from time import perf_counter
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.metrics import RequestMetrics

CORRELATION_HEADER = "X-Correlation-ID"
_CORRELATION_HEADER_KEY = CORRELATION_HEADER.lower().encode()
_PROPAGATION_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_SECRET = re.compile(r"\b([a-z][a-z0-9]{1,15}_)[A-Za-z0-9_-]{20,}\b")


def mask_secrets(text: str) -> str:
    """Mask e-mail addresses (``j***@example.com``) and API keys/tokens (``oa_***``) in a log message."""
    return _SECRET.sub(r"\1***", _EMAIL.sub(r"\1***@\2", text))


def current_trace_id() -> str | None:
    """The 32-hex trace id of the active span, or ``None`` outside any trace."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, to store with work that continues later."""
    return traceparent_of(trace.get_current_span())


def traceparent_of(span: trace.Span) -> str | None:
    """The W3C ``traceparent`` of ``span``, active or not (work it hands on, such as an event in a batch)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """The context to continue a trace stored as ``traceparent`` (``None`` when there is none)."""
    if not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_EXCEPTIONS = logging.Formatter()


class TraceContextFilter(logging.Filter):
    """Adds ``service``, ``trace_id``, ``span_id`` and ``correlation_id`` to every record; masks secrets
    (emails, API keys) wherever a record carries text: its message and arguments, its ``extra`` fields and
    its exception's traceback (an error message may quote an address)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else None
        record.__dict__.update(
            service=self.service,
            trace_id=trace_id,
            span_id=format(context.span_id, "016x") if context.is_valid else None,
            correlation_id=trace_id,
        )
        if isinstance(record.msg, str):
            record.msg = mask_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(mask_secrets(a) if isinstance(a, str) else a for a in record.args)
        for name, value in record.__dict__.items():
            if isinstance(value, str) and name not in _RECORD_ATTRIBUTES:
                record.__dict__[name] = mask_secrets(value)
        if record.exc_info:
            # Formatted once, masked, and kept as the record's text: every formatter prints ``exc_text``.
            record.exc_text = mask_secrets(record.exc_text or _EXCEPTIONS.formatException(record.exc_info))
            record.exc_info = None
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{base} trace={trace_id}" if trace_id else base


def configure_logging(*, service: str, level: str = "INFO", json_format: bool = True) -> None:
    """JSON lines on stdout for the root logger and uvicorn's loggers (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(TraceContextFilter(service))
    if json_format:
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "message": "event"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s [%(service)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # One access line per request, servicekit's (``servicekit.access``: route, status, duration, correlation
    # id). uvicorn's own would double it, and formatting a JSON line costs real time at hundreds of requests
    # per second.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


_provider: TracerProvider | None = None
_redis_instrumented = False


def configure_tracing(
    *, service: str, sample_ratio: float = 1.0, otlp_endpoint: str | None = None
) -> TracerProvider:
    """The process-wide tracer provider (created once; OpenTelemetry allows one per process)."""
    global _provider
    if _provider is None:
        _provider = TracerProvider(
            resource=Resource.create({"service.name": service}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(_provider)
    return _provider


def tracer_provider() -> TracerProvider | None:
    """The process-wide provider once ``configure_tracing`` ran (``None`` before: the global one is used)."""
    return _provider


def add_span_processor(processor: SpanProcessor) -> None:
    """Attach a processor (an exporter in tests) to the process-wide provider."""
    if _provider is None:
        raise RuntimeError("configure_tracing() first")
    _provider.add_span_processor(processor)


class InstrumentedFastAPI(FastAPI):
    """A FastAPI app whose whole middleware stack runs inside the wrappers of ``outermost``
    (:func:`instrument_app` adds :class:`RequestTelemetryMiddleware`): Starlette's ``ServerErrorMiddleware``
    included, so the 500 handler logs and answers under the request's span and correlation id."""

    def __init__(self, **kwargs: Any) -> None:
        # FastAPI's own telemetry would start a second server span per request, at about twice the CPU.
        super().__init__(telemetry={"tracing": False, "metrics": False, "logs": False}, **kwargs)
        self.outermost: list[Callable[[ASGIApp], ASGIApp]] = []

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for wrap in self.outermost:
            app = wrap(app)
        return app


def instrument_app(app: InstrumentedFastAPI, *, excluded_urls: str, request_metrics: RequestMetrics) -> None:
    """Server spans for every route except ``excluded_urls``, the ``X-Correlation-ID`` header, request
    metrics and the access log: one middleware around everything else."""
    paths = [url.strip() for url in excluded_urls.split(",") if url.strip()]
    excluded = re.compile("|".join(paths)) if paths else None
    tracer = trace.get_tracer("servicekit.http", tracer_provider=_provider)

    def wrap(inner: ASGIApp) -> ASGIApp:
        return RequestTelemetryMiddleware(
            inner, tracer=tracer, request_metrics=request_metrics, excluded=excluded
        )

    app.outermost.append(wrap)


def instrument_engine(engine: AsyncEngine) -> None:
    """A span per SQL statement on this engine.

    Built per engine rather than through ``SQLAlchemyInstrumentor().instrument()``, which is a process-wide
    singleton and would instrument only the first engine of a process.
    """
    tracer = trace.get_tracer("opentelemetry.instrumentation.sqlalchemy", tracer_provider=_provider)
    connections = metrics.get_meter("servicekit.db").create_up_down_counter("db.client.connections.usage")
    EngineTracer(tracer, engine.sync_engine, connections)  # type: ignore[no-untyped-call]


@contextmanager
def statement_span(name: str, statement: str) -> Iterator[None]:
    """A client span for one SQL statement sent on the driver directly (``servicekit.db.Driver``), attributed
    like the SQLAlchemy instrumentation's spans, inside a recorded trace."""
    if not trace.get_current_span().is_recording():
        # An unsampled request (or none): its children are not sampled either (ParentBased), so skip the work.
        yield
        return
    tracer = trace.get_tracer("servicekit.db", tracer_provider=_provider)
    with tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT) as span:
        if span.is_recording():
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("db.statement", statement)
        yield


def instrument_httpx_client(client: httpx.AsyncClient) -> None:
    """Client spans and ``traceparent``/``baggage`` propagation on every request of ``client``."""
    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=_provider)


def instrument_redis() -> None:
    global _redis_instrumented
    if not _redis_instrumented:
        RedisInstrumentor().instrument(tracer_provider=_provider)
        _redis_instrumented = True


class RequestTelemetryMiddleware:
    """Everything servicekit does per HTTP request, in one pure-ASGI layer (each layer costs CPU on every
    request; OpenTelemetry's ASGI middleware alone cost more than the route of a one-statement endpoint):

    - a SERVER span named after the route template, continuing an incoming W3C ``traceparent``, except for
      paths matching ``excluded`` (regular expressions, as OpenTelemetry's instrumentations read them);
    - its trace id in the ``X-Correlation-ID`` response header;
    - the request's metrics and access log line (:class:`~servicekit.metrics.RequestMetrics`), inside the span.

    Attributes are set only on recorded (sampled) spans; the others cost an id and a context switch.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: trace.Tracer,
        request_metrics: RequestMetrics,
        excluded: re.Pattern[str] | None = None,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.request_metrics = request_metrics
        self.excluded = excluded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        span: trace.Span | None = None
        token: Token[Context] | None = None
        correlation: tuple[bytes, bytes] | None = None
        if self.excluded is None or self.excluded.search(path) is None:
            parent = _propagated_context(scope)
            span = self.tracer.start_span(method, context=parent, kind=trace.SpanKind.SERVER)
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            span_context = span.get_span_context()
            if span_context.is_valid:
                correlation = (_CORRELATION_HEADER_KEY, format(span_context.trace_id, "032x").encode())
        status = 500

        async def send_with_correlation(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if correlation is not None:
                    message["headers"] = [*message.get("headers", ()), correlation]
            await send(message)

        error: BaseException | None = None
        self.request_metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_correlation)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.request_metrics.in_flight.dec()
            route = getattr(scope.get("route"), "path", None)
            self.request_metrics.record(
                method=method,
                path=path,
                route=route or "unmatched",
                status=status,
                elapsed=perf_counter() - started,
            )
            if span is not None and token is not None:
                if span.is_recording():
                    _describe_server_span(span, scope, route=route, status=status, error=error)
                span.end()
                otel_context.detach(token)


def _propagated_context(scope: Scope) -> Context | None:
    """The caller's trace context from the W3C headers, ``None`` (a new trace) without any."""
    carrier: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _PROPAGATION_HEADERS:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            carrier[key] = f"{carrier[key]},{text}" if key in carrier else text
    return propagate.extract(carrier) if carrier else None


def _describe_server_span(
    span: trace.Span, scope: Scope, *, route: str | None, status: int, error: BaseException | None
) -> None:
    method = scope["method"]
    span.set_attributes(
        {
            "http.request.method": method,
            "url.scheme": scope.get("scheme", "http"),
            "url.path": scope["path"],
            "http.response.status_code": status,
        }
    )
    if route is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    if error is not None:
        span.record_exception(error)
    if error is not None or status >= 500:
        span.set_attribute("error.type", type(error).__qualname__ if error is not None else str(status))
        span.set_status(trace.StatusCode.ERROR)
