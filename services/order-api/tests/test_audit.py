"""The audit trail cannot be edited through the database or the API, and an edit made around the trigger is
found by ``python -m order_api audit-verify``."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.__main__ import main as order_api_cli
from order_api.audit.models import AuditLog
from order_api.audit.service import Broken, append_audit, row_hash, verify_audit_chain
from order_api.orders.lifecycle import Actor

if TYPE_CHECKING:
    from conftest import ApiKeys, OrderApiRunner

ADMIN = Actor(kind="api-key", id="admin", role="admin")
TRIGGER = "audit_log_append_only"


async def append_rows(session: AsyncSession, count: int) -> None:
    for n in range(count):
        await append_audit(
            session, actor=ADMIN, action="operator.created", target_type="operator", target_id=f"op-{n}"
        )


async def test_the_database_refuses_to_update_delete_or_truncate_audit_rows(db_session: AsyncSession) -> None:
    await append_rows(db_session, 2)
    for statement in (
        "UPDATE audit_log SET actor = 'someone:else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db_session.begin_nested():
                await db_session.execute(text(statement))
    assert await verify_audit_chain(db_session) is None


async def test_the_api_offers_no_way_to_change_audit_rows(
    order_api: OrderApiRunner, api_keys: ApiKeys
) -> None:
    async with order_api() as api:
        paths = (await api.client.get("/openapi.json")).json()["paths"]
        deleted = await api.client.delete("/v1/audit", headers={"Authorization": f"Bearer {api_keys.admin}"})
    audit_methods = {method for path, ops in paths.items() if path.startswith("/v1/audit") for method in ops}
    assert audit_methods == {"get"}
    assert deleted.status_code == 405


async def test_verification_finds_rows_missing_in_the_middle_or_at_the_end(db_session: AsyncSession) -> None:
    await append_rows(db_session, 4)
    first = await db_session.scalar(text("SELECT min(id) FROM audit_log"))
    await db_session.execute(text(f"ALTER TABLE audit_log DISABLE TRIGGER {TRIGGER}"))
    await db_session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": first + 3})
    assert await verify_audit_chain(db_session) == Broken(
        first + 3, f"rows {first + 3} to {first + 3} are missing from the end"
    )
    await db_session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": first + 1})
    broken = await verify_audit_chain(db_session)
    assert broken == Broken(first + 1, f"row {first + 1} is missing (the next row is {first + 2})")


async def audit_verify_process(database_url: str) -> tuple[int, str]:
    """``python -m order_api audit-verify`` as ops run it: exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "order_api",
        "audit-verify",
        env={**os.environ, "ORDER_API_DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode().strip()


async def test_tampering_with_a_row_is_found_by_the_verification_command(
    order_api: OrderApiRunner,
    own_database_url: str,
    api_keys: ApiKeys,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORDER_API_DATABASE_URL", own_database_url)

    async def audit_verify() -> tuple[int, str]:  # the command's own code, in this process (faster)
        code = await asyncio.to_thread(order_api_cli, ["audit-verify"])
        return code, capsys.readouterr().out.strip().splitlines()[-1]  # after the app's log lines

    async with order_api(database_url=own_database_url) as api:
        for name in ("Anna", "Boris", "Chen"):
            created = await api.client.post(
                "/v1/admin/operators",
                json={"name": name},
                headers={"Authorization": f"Bearer {api_keys.admin}"},
            )
            assert created.status_code == 201
    assert await audit_verify() == (0, "OK: the audit chain of 3 rows is intact; no checkpoint yet")

    connection = await asyncpg.connect(own_database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:

        async def tamper(statement: str, *args: object) -> None:
            async with connection.transaction():
                await connection.execute(f"ALTER TABLE order_api.audit_log DISABLE TRIGGER {TRIGGER}")
                await connection.execute(statement, *args)
                await connection.execute(f"ALTER TABLE order_api.audit_log ENABLE TRIGGER {TRIGGER}")

        # Someone renames the operator created second, directly in SQL.
        await tamper(
            "UPDATE order_api.audit_log SET parameters = $1 WHERE id = 2",
            '{"name": "Mallory", "role": "operator", "telegram_user_id": null}',
        )
        assert await audit_verify_process(own_database_url) == (
            1,
            "BROKEN at audit_log row 2: the row's content does not match its row_hash",
        )
        # ...and, smarter, recomputes that row's hash: the next row's link to it breaks.
        fields = dict(await connection.fetchrow("SELECT * FROM order_api.audit_log WHERE id = 2"))
        fields["parameters"] = {"name": "Mallory", "role": "operator", "telegram_user_id": None}
        await tamper("UPDATE order_api.audit_log SET row_hash = $1 WHERE id = 2", row_hash(fields))
        assert await audit_verify() == (
            1,
            "BROKEN at audit_log row 3: prev_hash is not the hash of the row before it",
        )
        with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM order_api.audit_log WHERE id = 3")  # the trigger is back
    finally:
        await connection.close()


def test_the_hash_covers_every_field_of_the_row() -> None:
    row: dict[str, Any] = {column.name: None for column in AuditLog.__table__.columns}
    row.update(id=1, parameters={}, prev_hash="0" * 64, occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    base = row_hash(row)
    for field in ("actor", "actor_role", "action", "target_type", "target_id", "channel", "correlation_id"):
        assert row_hash({**row, field: "x"}) != base, field
    assert row_hash({**row, "parameters": {"a": 1}}) != base
    assert row_hash({**row, "id": 2}) != base
