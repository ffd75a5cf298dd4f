"""order-api's outbox for admins: ``/v1/admin/outbox`` behind its admins (the admin key or an admin's personal
token), every replay in the audit trail, and the same from ``python -m order_api outbox``."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.__main__ import main as order_api_cli
from order_api.audit.models import AuditLog
from order_api.db import SCHEMA, outbox
from order_api.testing import ApiKeys, OrderApi
from servicekit.db import Database, utcnow
from servicekit.outbox import add_event


async def dead_event(session: AsyncSession, *, order_id: str) -> str:
    """An ``order.closed`` for wallet-pool that delivery gave up on."""
    event_id = await add_event(
        session,
        outbox,
        destination="wallet-pool",
        event_type="order.closed",
        payload={"order_id": order_id, "customer_email": "jane@example.com"},
        aggregate_id=order_id,
    )
    await session.execute(
        update(outbox)
        .where(outbox.c.id == event_id)
        .values(attempts=12, dead_at=utcnow(), last_error="PeerUnavailableError: wallet-pool answered 503")
    )
    return event_id


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admins_list_and_replay_dead_events_and_each_replay_is_audited(
    api: OrderApi, api_keys: ApiKeys, db_session: AsyncSession
) -> None:
    order_id = str(uuid.uuid4())
    event_id = await dead_event(db_session, order_id=order_id)
    operator = await api.client.post(
        "/v1/admin/operators", json={"name": "olga", "role": "operator"}, headers=bearer(api_keys.admin)
    )
    assert operator.status_code == 201, operator.text

    for token in (operator.json()["token"], api_keys.wallet_pool):
        refused = await api.client.get("/v1/admin/outbox", headers=bearer(token))
        assert refused.status_code == 403, refused.text
        assert (
            await api.client.post(f"/v1/admin/outbox/{event_id}/replay", headers=bearer(token))
        ).status_code == 403

    listed = await api.client.get(
        "/v1/admin/outbox",
        params={"status": "dead", "aggregate_id": order_id},
        headers=bearer(api_keys.admin),
    )
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["id"], item["event_type"], item["destination"], item["attempts"]) == (
        event_id,
        "order.closed",
        "wallet-pool",
        12,
    )
    assert "jane@example.com" not in listed.text

    replayed = await api.client.post(f"/v1/admin/outbox/{event_id}/replay", headers=bearer(api_keys.admin))
    assert replayed.status_code == 200, replayed.text
    assert (replayed.json()["status"], replayed.json()["attempts"]) == ("pending", 0)
    audit = (await db_session.execute(select(AuditLog).where(AuditLog.target_id == event_id))).scalar_one()
    assert (audit.action, audit.actor, audit.target_type) == (
        "outbox.event_replayed",
        "api-key:admin",
        "outbox_event",
    )
    assert audit.parameters == {
        "event_type": "order.closed",
        "destination": "wallet-pool",
        "aggregate_id": order_id,
    }
    again = await api.client.post(f"/v1/admin/outbox/{event_id}/replay", headers=bearer(api_keys.admin))
    assert (again.status_code, again.json()["code"]) == (409, "outbox_event_not_replayable")


async def test_the_command_line_lists_and_replays_dead_events(
    own_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    database = Database(url=own_database_url, schema=SCHEMA, var_dir=tmp_path, service_name="order-api")
    order_id = str(uuid.uuid4())
    try:
        async with database.sessionmaker.begin() as session:
            event_id = await dead_event(session, order_id=order_id)
    finally:
        await database.dispose()
    for name in [n for n in os.environ if n.startswith("ORDER_API_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ORDER_API_DATABASE_URL", own_database_url)

    async def command(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(order_api_cli, ["outbox", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = await command("list", "--status", "dead")
    assert code == 0
    (line,) = out.splitlines()
    assert json.loads(line)["id"] == event_id
    assert "jane@example.com" not in out

    code, out, _ = await command("replay", event_id)
    assert (code, out.strip()) == (0, f"replayed {event_id}: order.closed for wallet-pool is pending again")
    code, out, _ = await command("list", "--status", "dead")
    assert (code, out) == (0, "")
    code, _, err = await command("replay", event_id)
    assert code == 2
    assert err.startswith("outbox_event_not_replayable:")

    database = Database(url=own_database_url, schema=SCHEMA, var_dir=tmp_path, service_name="order-api")
    try:
        async with database.sessionmaker() as session:
            audit = (
                await session.execute(select(AuditLog).where(AuditLog.target_id == event_id))
            ).scalar_one()
    finally:
        await database.dispose()
    assert (audit.action, audit.channel) == ("outbox.event_replayed", "cli")
