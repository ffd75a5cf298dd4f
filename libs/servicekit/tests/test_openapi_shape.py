"""``servicekit.openapi`` on a small app: what a route declares is what the public and internal documents say."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from servicekit.errors import install_error_handlers, problem_responses
from servicekit.openapi import ETAG_HEADER, INTERNAL, documents_of, install_openapi


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "hello"}]})

    text: str


class Receipt(BaseModel):
    accepted: int


def small_app() -> FastAPI:
    app = FastAPI(title="Kit")
    install_error_handlers(app)
    install_openapi(app)

    @app.get(
        "/notes/{note_id}",
        operation_id="getNote",
        response_model=Note,
        responses={**problem_responses(401, 404), 200: {"headers": ETAG_HEADER}},
    )
    async def get_note(note_id: int) -> Note:
        return Note(text=str(note_id))

    @app.post("/peer/receipts", operation_id="receiveNotes", openapi_extra=INTERNAL)
    async def receive(notes: list[Note]) -> Receipt:
        return Receipt(accepted=len(notes))

    return app


def test_a_route_is_documented_as_it_declares() -> None:
    app = small_app()
    public = app.openapi()
    responses = public["paths"]["/notes/{note_id}"]["get"]["responses"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}}
    assert {status: responses[status]["content"] for status in ("401", "404", "422")} == dict.fromkeys(
        ("401", "404", "422"), problem
    )  # FastAPI's own 422 (the path parameter) too
    assert set(responses["200"]["headers"]) == {"ETag", "X-Correlation-ID"}
    assert set(responses["401"]["headers"]) == {"WWW-Authenticate", "X-Correlation-ID"}
    assert set(public["components"]["headers"]) == {"ETag", "WWW-Authenticate", "X-Correlation-ID"}
    assert "HTTPValidationError" not in repr(public)


def test_an_internal_route_is_only_in_the_internal_document_with_only_the_schemas_it_uses() -> None:
    app = small_app()
    public, internal = app.openapi(), documents_of(app).internal()
    assert set(public["paths"]) == {"/notes/{note_id}"}
    assert set(internal["paths"]) == {"/peer/receipts"}
    assert set(internal["components"]["schemas"]) == {"Note", "Receipt", "ProblemDetail", "ProblemFieldError"}
    assert "Receipt" not in public["components"]["schemas"]
    assert set(documents_of(app).complete()["paths"]) == {"/notes/{note_id}", "/peer/receipts"}
