"""One trace per request: its id is on every log line and in ``X-Correlation-ID``; SQL is traced; health and
metrics are not; secrets are masked; a service that samples nothing still hands out correlation ids."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from servicekit.apikeys import mint_key
from servicekit.telemetry import mask_secrets
from servicekit.testing.kitapps import (
    KitSettings,
    Peer,
    create_demo_app,
    create_demo_tables,
    in_process_client,
)

LogReader = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[LogReader]:
    """The JSON log lines the app (configured during the test) wrote to stdout."""

    def read() -> list[dict[str, Any]]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    yield read
    # configure_logging() bound the root handler to this test's captured stdout, which closes now.
    logging.getLogger().handlers.clear()


@pytest.fixture
async def app(tmp_path: Path) -> FastAPI:
    app = create_demo_app(KitSettings(service_name="kit-telemetry", var_dir=tmp_path))
    await create_demo_tables(app)
    return app


def trace_id_of(span: ReadableSpan) -> str:
    return format(span.context.trace_id, "032x")


def server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_log_lines_of_a_request_carry_its_trace_and_mask_emails(
    json_logs: LogReader, spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app = create_demo_app(KitSettings(service_name="kit-telemetry", var_dir=tmp_path))  # logs to capsys
    async with in_process_client(app) as client:
        response = await client.get("/v1/items/abc")
    assert response.status_code == 200
    correlation_id = response.headers["X-Correlation-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", correlation_id)

    records = json_logs()
    (record,) = [r for r in records if str(r.get("event", "")).startswith("item abc looked up")]
    assert record["event"] == "item abc looked up for j***@example.com"
    assert record["asked_by"] == "j***@example.com"  # extra fields are masked too
    assert not any("jane.doe" in json.dumps(r) for r in records)
    assert record["service"] == "kit-telemetry"
    assert record["level"] == "INFO"
    assert record["trace_id"] == correlation_id
    assert record["correlation_id"] == correlation_id
    (server,) = [s for s in server_spans(spans) if trace_id_of(s) == correlation_id]
    assert record["span_id"] == format(server.context.span_id, "016x")


async def test_an_unexpected_error_is_logged_under_the_correlation_id_the_client_got(
    json_logs: LogReader, tmp_path: Path
) -> None:
    app = create_demo_app(KitSettings(service_name="kit-telemetry", var_dir=tmp_path))
    async with in_process_client(app) as client:
        response = await client.get("/v1/boom")
    assert response.status_code == 500
    correlation_id = response.headers["X-Correlation-ID"]
    (record,) = [r for r in json_logs() if r.get("event") == "unhandled error"]
    assert record["level"] == "ERROR"
    assert record["correlation_id"] == correlation_id
    assert "RuntimeError: SELECT password FROM customer" in record["exc_info"]
    assert "email = 'j***@example.com'" in record["exc_info"]  # a traceback is masked too
    assert "jane.doe" not in json.dumps(record)


async def test_each_sql_statement_is_a_span_under_the_server_span(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    async with in_process_client(app) as client:
        response = await client.get("/v1/notes/count")
    assert response.status_code == 200
    correlation_id = response.headers["X-Correlation-ID"]
    (server,) = [s for s in server_spans(spans) if trace_id_of(s) == correlation_id]
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/notes/count"
    statements = [
        s
        for s in spans.get_finished_spans()
        if s.attributes and s.attributes.get("db.system") == "sqlite" and trace_id_of(s) == correlation_id
    ]
    (select_span,) = [
        s for s in statements if str((s.attributes or {}).get("db.statement")).startswith("SELECT count(*)")
    ]
    assert select_span.kind is SpanKind.CLIENT
    assert select_span.parent is not None
    assert select_span.parent.span_id == server.context.span_id


async def test_health_and_metrics_are_not_traced(app: FastAPI, spans: InMemorySpanExporter) -> None:
    async with in_process_client(app) as client:
        for path in ("/health/live", "/health/ready", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert "X-Correlation-ID" not in response.headers
        # Not even the readiness check's own database query: nothing at all was recorded so far.
        assert spans.get_finished_spans() == ()
        traced = await client.get("/v1/items/abc")
    (server,) = server_spans(spans)
    assert trace_id_of(server) == traced.headers["X-Correlation-ID"]


def test_mask_secrets_masks_emails_and_api_keys() -> None:
    key = mint_key("oa")
    masked = mask_secrets(f"customer John.Smith+desk@mail.example.org paid; caller key {key} used")
    assert masked == "customer J***@mail.example.org paid; caller key oa_*** used"
    assert mask_secrets("order 42 moved to COMPLETED") == "order 42 moved to COMPLETED"


async def test_a_service_sampling_nothing_records_no_span_but_still_correlates(peer: Peer) -> None:
    # The peer runs with trace_sample_ratio=0.
    async with httpx.AsyncClient(base_url=peer.url) as client:
        response = await client.get("/v1/trace")
        assert response.status_code == 200
        correlation_id = response.headers["X-Correlation-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", correlation_id)
        assert response.json() == {"trace_id": correlation_id}
        recorded = (await client.get("/test/spans")).json()
        assert [s for s in recorded if s["trace_id"] == correlation_id] == []

        # A caller's sampled trace is continued: the parent's decision wins.
        trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        response = await client.get("/v1/trace", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert response.headers["X-Correlation-ID"] == trace_id
        recorded = (await client.get("/test/spans")).json()
    (server,) = [s for s in recorded if s["trace_id"] == trace_id]
    assert (server["kind"], server["parent_span_id"]) == ("SERVER", parent_id)
    log_lines = [r for r in peer.process.log_records() if r.get("event") == "trace probe"]
    assert {r["correlation_id"] for r in log_lines} >= {correlation_id, trace_id}


async def test_the_server_span_is_named_by_route_template_with_status_and_errors(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    async with in_process_client(app) as client:
        created = await client.post("/v1/orders", json={"amount": "1", "items": []})
        missing = await client.get("/v1/items/missing")
        boom = await client.get("/v1/boom")
    assert [r.status_code for r in (created, missing, boom)] == [201, 404, 500]
    assert boom.headers.get_list("X-Correlation-ID") == [boom.headers["X-Correlation-ID"]]  # once
    by_trace = {trace_id_of(s): s for s in server_spans(spans)}
    order, item, failed = (by_trace[r.headers["X-Correlation-ID"]] for r in (created, missing, boom))
    assert (order.name, item.name, failed.name) == (
        "POST /v1/orders",
        "GET /v1/items/{item_id}",
        "GET /v1/boom",
    )
    assert order.attributes is not None
    assert item.attributes is not None
    assert failed.attributes is not None
    assert order.attributes["http.route"] == "/v1/orders"
    assert order.attributes["http.request.method"] == "POST"
    assert order.attributes["http.response.status_code"] == 201
    assert item.attributes["http.response.status_code"] == 404
    assert order.status.status_code is StatusCode.UNSET
    assert item.status.status_code is StatusCode.UNSET
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


async def test_an_incoming_traceparent_is_continued(app: FastAPI, spans: InMemorySpanExporter) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with in_process_client(app) as client:
        response = await client.get("/v1/items/abc", headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
    assert response.headers["X-Correlation-ID"] == trace_id
    (server,) = server_spans(spans)
    assert trace_id_of(server) == trace_id
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == parent_id
