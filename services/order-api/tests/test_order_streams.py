"""The customer's live order stream, ``GET /v1/orders/{id}/events``, served over real HTTP in process.

On PostgreSQL a change reaches streams through ``LISTEN/NOTIFY`` (on any replica); on the embedded database
through the in-process fallback. The bounds, ``Last-Event-ID`` resume, heartbeats, the stream's lifetime and
the clean-up when a client goes away are checked here; ``tests/test_order_streams.py`` follows a queued order
across real order-api and wallet-pool processes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from coin_addresses import demo_address
from order_api.context import context_of
from order_api.main import create_app
from order_api.orders.live import OrderChange
from order_api.orders.schemas import OrderRead
from order_api.orders.stream import OrderStreams, change_kind, event_id
from order_api.testing import ApiKeys, SettingsFactory, order_body, wallet_assigned
from servicekit.db import utcnow
from servicekit.signals import SignalListener
from servicekit.state import service_state
from servicekit.testing import EventStreamReader, eventually, migrate_embedded, served_app


@dataclass
class Served:
    url: str
    streams: OrderStreams
    client: httpx.AsyncClient
    listener: SignalListener


@asynccontextmanager
async def served(make_settings: SettingsFactory, **overrides: Any) -> AsyncIterator[Served]:
    app = create_app(make_settings(**overrides))
    async with served_app(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        ctx = context_of(app)
        [listener] = [w for w in service_state(app).runtime.workers if isinstance(w, SignalListener)]
        yield Served(url=url, streams=ctx.order_streams, client=client, listener=listener)


async def new_order(desk: Served) -> dict[str, Any]:
    """An order (wallet-pool unreachable: ``awaiting_address``) with its session token."""
    response = await desk.client.post("/v1/orders", json=order_body())
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "awaiting_address"
    return body


def auth(order: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {order['session_token']}"}


@asynccontextmanager
async def stream(
    desk: Served, order: dict[str, Any], *, last_event_id: str | None = None
) -> AsyncIterator[EventStreamReader]:
    headers = auth(order) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    async with (
        httpx.AsyncClient(base_url=desk.url, timeout=10) as client,
        client.stream("GET", f"/v1/orders/{order['id']}/events", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        reader = EventStreamReader(response)
        try:
            yield reader
        finally:
            await reader.aclose()


async def assign_address(desk: Served, api_keys: ApiKeys, order: dict[str, Any], seed: int) -> str:
    """wallet-pool's ``wallet.assigned`` for ``order``, as its relay delivers it."""
    address = demo_address(currency="BTC", network="bitcoin", seed=seed)
    answer = await desk.client.post(
        "/v1/events",
        json=wallet_assigned(order["id"], address),
        headers={"Authorization": f"Bearer {api_keys.wallet_pool}"},
    )
    assert answer.status_code == 200, answer.text
    return address


async def open_streams(desk: Served) -> int:
    return desk.streams.open_count


async def test_the_stream_sends_the_order_at_once_then_every_change_and_ends_with_a_closed_order(
    make_settings: SettingsFactory, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with served(make_settings, database_url=own_database_url, stream_retry_ms=2500) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            first = await events.next()
            assert events.retry == 2500  # the reconnection delay, before the first event
            shown = (await desk.client.get(f"/v1/orders/{order['id']}", headers=auth(order))).json()
            assert (first.event, first.json(), first.id) == ("order", shown, str(shown["version"]))

            address = await assign_address(desk, api_keys, order, seed=7001)
            assigned = await events.next()
            assert assigned.event == "address_assigned"
            assert (assigned.json()["status"], assigned.json()["deposit_address"]) == (
                "awaiting_deposit",
                address,
            )
            assert assigned.id == str(assigned.json()["version"])

            cancelled = await desk.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth(order))
            assert cancelled.status_code == 200, cancelled.text
            closing = await events.next()
            assert (closing.event, closing.json()) == ("status_changed", cancelled.json())
            await events.ends()  # nothing more will happen to a closed order

        # The client has the closed order's last state: 204 tells an EventSource to stop reconnecting.
        again = await desk.client.get(
            f"/v1/orders/{order['id']}/events", headers=auth(order) | {"Last-Event-ID": closing.id or ""}
        )
        assert again.status_code == 204
        assert await eventually(lambda: open_streams(desk), until=lambda n: n == 0) == 0


async def test_a_change_made_through_one_replica_reaches_a_stream_on_another(
    make_settings: SettingsFactory, own_database_url: str
) -> None:
    async with (
        served(make_settings, database_url=own_database_url) as first,
        served(make_settings, database_url=own_database_url) as second,
    ):
        order = await new_order(first)
        async with stream(second, order) as events:
            assert (await events.next()).json()["status"] == "awaiting_address"
            cancelled = await first.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth(order))
            assert cancelled.status_code == 200, cancelled.text
            changed = await events.next(within=2)
            assert (changed.event, changed.json()["status"]) == ("status_changed", "cancelled")


async def test_a_reconnecting_client_gets_the_order_again_only_if_it_changed_and_heartbeats_meanwhile(
    api_keys: ApiKeys, make_settings: SettingsFactory, own_database_url: str
) -> None:
    async with served(make_settings, database_url=own_database_url, stream_heartbeat_seconds=0.2) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            seen = await events.next()
        async with stream(desk, order, last_event_id=seen.id) as events:
            # Nothing new: no event, only heartbeats.
            await eventually(lambda: _heartbeats(events), until=lambda n: n >= 2, within=5)
            address = await assign_address(desk, api_keys, order, seed=7002)
            assigned = await events.next()
            assert (assigned.event, assigned.json()["deposit_address"]) == ("address_assigned", address)
        async with stream(desk, order, last_event_id=seen.id) as events:  # an older state: the order at once
            current = await events.next()
            assert (current.event, current.id) == ("order", assigned.id)


async def _heartbeats(events: EventStreamReader) -> int:
    try:
        await events.next(within=0.3)
    except TimeoutError:
        pass
    else:
        raise AssertionError("an event although the order did not change")
    return events.comments.count("heartbeat")


async def test_streams_are_bounded_per_session_and_per_client_address(
    make_settings: SettingsFactory, own_database_url: str
) -> None:
    async with served(
        make_settings, database_url=own_database_url, stream_max_per_session=2, stream_max_per_client=3
    ) as desk:
        one, other = await new_order(desk), await new_order(desk)
        async with AsyncExitStack() as opened:
            for _ in range(2):
                await opened.enter_async_context(stream(desk, one))
            refused = await desk.client.get(f"/v1/orders/{one['id']}/events", headers=auth(one))
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.headers["retry-after"] == "10"
            assert refused.json()["code"] == "rate_limited"
            assert "session" in refused.json()["detail"]

            await opened.enter_async_context(stream(desk, other))  # another session, the same address
            refused = await desk.client.get(f"/v1/orders/{other['id']}/events", headers=auth(other))
            assert refused.status_code == 429
            assert "address" in refused.json()["detail"]
            assert desk.streams.open_count == 3

        # The clients went away: their places are free again, and nothing is left behind.
        assert await eventually(lambda: open_streams(desk), until=lambda n: n == 0) == 0
        async with stream(desk, other) as events:
            assert (await events.next()).event == "order"


async def test_a_stream_ends_after_its_lifetime_and_a_gone_client_leaves_nothing_behind(
    make_settings: SettingsFactory, own_database_url: str
) -> None:
    async with served(
        make_settings, database_url=own_database_url, stream_max_seconds=0.5, stream_heartbeat_seconds=0.1
    ) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            await events.next()
            await events.ends(within=3)  # the client reconnects with Last-Event-ID
        assert await eventually(lambda: open_streams(desk), until=lambda n: n == 0) == 0

        async with served(make_settings, database_url=own_database_url) as long_lived:
            async with AsyncExitStack() as opened:
                for _ in range(3):
                    events = await opened.enter_async_context(stream(long_lived, order))
                    await events.next()
                assert long_lived.streams.open_count == 3
            # Closed by the client, not by the server: the server notices and cleans up.
            assert await eventually(lambda: open_streams(long_lived), until=lambda n: n == 0) == 0


async def test_another_customers_order_is_not_found_and_a_stream_needs_the_session(
    make_settings: SettingsFactory, own_database_url: str
) -> None:
    async with served(make_settings, database_url=own_database_url) as desk:
        mine, theirs = await new_order(desk), await new_order(desk)
        foreign = await desk.client.get(f"/v1/orders/{theirs['id']}/events", headers=auth(mine))
        assert foreign.status_code == 404
        assert foreign.headers["content-type"] == "application/problem+json"
        anonymous = await desk.client.get(f"/v1/orders/{mine['id']}/events")
        assert anonymous.status_code == 401
        assert desk.streams.open_count == 0


async def test_on_the_embedded_database_changes_reach_streams_in_process(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    var_dir = tmp_path / "embedded"
    await migrate_embedded(var_dir, "order-api")
    async with served(make_settings, database_url=None, var_dir=var_dir) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            await events.next()
            cancelled = await desk.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth(order))
            assert cancelled.status_code == 200, cancelled.text
            changed = await events.next(within=2)
            assert (changed.event, changed.json()["status"]) == ("status_changed", "cancelled")


def test_the_public_document_describes_the_stream_and_its_event_types(make_settings: SettingsFactory) -> None:
    operation = create_app(make_settings()).openapi()["paths"]["/v1/orders/{order_id}/events"]["get"]
    assert (operation["operationId"], operation["summary"]) == ("streamOrderEvents", "Follow an order live")
    stream_content = operation["responses"]["200"]["content"]
    assert list(stream_content) == ["text/event-stream"]
    event = stream_content["text/event-stream"]["itemSchema"]["properties"]
    assert event["event"]["enum"] == ["order", "status_changed", "address_assigned", "queue_position"]
    assert event["data"]["contentSchema"] == {"$ref": "#/components/schemas/OrderRead"}
    assert {"204", "401", "404", "429"} <= set(operation["responses"])
    assert "Last-Event-ID" in [parameter["name"] for parameter in operation["parameters"]]


async def test_a_change_is_not_lost_while_the_listening_connection_is_down(
    make_settings: SettingsFactory, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with served(make_settings, database_url=own_database_url) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            await asyncio.wait_for(desk.listener.listening.wait(), 5)
            await events.next()
            assert await _terminate_listeners(own_database_url) == 1
            address = await assign_address(
                desk, api_keys, order, seed=7003
            )  # while it listens again, or before
            assigned = await events.next(within=5)
            assert (assigned.event, assigned.json()["deposit_address"]) == ("address_assigned", address)

            await eventually(_listening(desk, True), within=5, message="the replica listens again")
            cancelled = await desk.client.post(f"/v1/orders/{order['id']}/cancel", headers=auth(order))
            assert cancelled.status_code == 200, cancelled.text
            assert (await events.next(within=2)).event == "status_changed"


def _listening(desk: Served, listening: bool) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return desk.listener.listening.is_set() == listening

    return probe


async def _terminate_listeners(database_url: str) -> int:
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(url)
    try:
        ended: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
        )
        return ended
    finally:
        await connection.close()


async def test_a_stream_whose_session_was_ended_tells_nothing_more(
    make_settings: SettingsFactory, own_database_url: str, api_keys: ApiKeys
) -> None:
    async with served(make_settings, database_url=own_database_url) as desk:
        order = await new_order(desk)
        async with stream(desk, order) as events:
            await events.next()
            logged_out = await desk.client.post("/v1/auth/logout", headers=auth(order))
            assert logged_out.status_code == 204, logged_out.text
            await assign_address(desk, api_keys, order, seed=7004)
            await events.ends()  # the address is not told to a session that was ended
        assert await eventually(lambda: open_streams(desk), until=lambda n: n == 0) == 0


def test_what_a_change_is_called_and_the_id_of_each_state() -> None:
    now = utcnow()
    queued = OrderRead(
        id=str(uuid.uuid4()),
        status="queued",
        from_currency="BTC",
        from_network="bitcoin",
        to_currency="USDT",
        to_network="TRC20",
        amount=Decimal("0.05"),
        payout_address=None,
        deposit_address=None,
        queue_position=2,
        estimated_wait_seconds=600,
        priority="normal",
        expires_at=now,
        created_at=now,
        updated_at=now,
        version=2,
    )
    moved = queued.model_copy(update={"queue_position": 1})
    served = queued.model_copy(
        update={
            "status": "awaiting_deposit",
            "deposit_address": "bc1q…",
            "queue_position": None,
            "version": 3,
        }
    )
    cancelled = queued.model_copy(update={"status": "cancelled", "queue_position": None, "version": 3})
    assert (event_id(queued), event_id(moved), event_id(served)) == ("2.2", "2.1", "3")
    assert change_kind(queued, queued) is None
    assert change_kind(queued, moved) == "queue_position"
    assert change_kind(queued, served) == "address_assigned"
    assert change_kind(queued, cancelled) == "status_changed"
    assert change_kind(queued, queued.model_copy(update={"version": 3})) == "order"


def test_a_signal_wakes_the_streams_of_its_order_and_of_its_queue_only(
    make_settings: SettingsFactory,
) -> None:
    streams = OrderStreams(settings=make_settings())
    queued = streams.open(order_id="q", session_id="s1", client="198.51.100.1")
    streams.follow_queue(queued, "BTC/bitcoin")
    other = streams.open(order_id="o", session_id="s2", client="198.51.100.1")
    streams.on_signal(OrderChange(order_id="x", queue="ETH/ethereum").payload())
    streams.on_signal("not a signal")
    assert (queued.changed.is_set(), other.changed.is_set()) == (False, False)
    streams.on_signal(OrderChange(order_id="x", queue="BTC/bitcoin").payload())
    assert (queued.changed.is_set(), other.changed.is_set()) == (True, False)
    streams.on_signal(OrderChange(order_id="o", queue=None).payload())
    assert other.changed.is_set()
    for watch in (queued, other, queued):  # closing twice changes nothing
        streams.close(watch)
    assert streams.open_count == 0
