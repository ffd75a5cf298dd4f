"""The request's session (``DbSession``): committed before the response is sent, nothing written on error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.db import Database
from servicekit.testing import async_url, create_database, drop_database
from servicekit.testing.kitapps import (
    DEMO_SCHEMA,
    KitSettings,
    create_demo_app,
    create_demo_tables,
    in_process_client,
    note,
)


@dataclass
class Harness:
    client: httpx.AsyncClient
    observer: Database
    """A second connection pool on the same database, as another process would see it."""
    seen_at_response_start: list[int] = field(default_factory=list)

    async def committed_notes(self) -> int:
        async with self.observer.engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(note)) or 0)


class ObserveAtResponseStart:
    """Counts the committed notes at the moment the response starts on its way to the client."""

    def __init__(self, app: ASGIApp, harness: list[Harness]) -> None:
        self.app = app
        self.harness = harness

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def observing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and scope.get("path") == "/v1/notes":
                harness = self.harness[0]
                harness.seen_at_response_start.append(await harness.committed_notes())
            await send(message)

        await self.app(scope, receive, observing_send if scope["type"] == "http" else send)


@pytest.fixture(params=["sqlite", "postgresql"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    name = await create_database("sk_session") if request.param == "postgresql" else None
    url = async_url(name) if name else None
    settings = KitSettings(service_name="kit-session", var_dir=tmp_path, database_url=url)
    app: FastAPI = create_demo_app(settings)
    await create_demo_tables(app)
    holder: list[Harness] = []
    app.add_middleware(ObserveAtResponseStart, harness=holder)
    observer = Database(url=url, schema=DEMO_SCHEMA, var_dir=tmp_path, service_name="kit-session")
    try:
        async with in_process_client(app) as client:
            holder.append(Harness(client=client, observer=observer))
            yield holder[0]
    finally:
        await observer.dispose()
        if name:
            await drop_database(name)


async def test_the_data_is_committed_before_the_response_is_sent(harness: Harness) -> None:
    response = await harness.client.post("/v1/notes", json={"body": "first"})
    assert response.status_code == 201, response.text
    assert harness.seen_at_response_start == [1]
    assert await harness.committed_notes() == 1


async def test_a_route_that_raises_writes_nothing(harness: Harness) -> None:
    response = await harness.client.post("/v1/notes", params={"fail": "true"}, json={"body": "doomed"})
    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert harness.seen_at_response_start == [0]
    assert await harness.committed_notes() == 0


async def test_a_failing_commit_is_an_error_response_and_leaves_nothing_behind(harness: Harness) -> None:
    # The foreign key is DEFERRABLE INITIALLY DEFERRED: the insert flushes fine and only COMMIT fails.
    response = await harness.client.post("/v1/notes", json={"body": "orphan", "parent_id": 424242})
    assert response.status_code == 500, response.text
    assert response.json()["code"] == "internal_error"
    assert "FOREIGN KEY" not in response.text.upper()
    assert await harness.committed_notes() == 0

    # The next request gets a clean unit of work: the rejected row does not ride along in a pooled
    # connection (on SQLite a failed COMMIT leaves the transaction open unless it is rolled back).
    assert (await harness.client.get("/v1/notes/count")).json() == {"count": 0}
    response = await harness.client.post("/v1/notes", json={"body": "fine"})
    assert response.status_code == 201, response.text
    assert await harness.committed_notes() == 1
