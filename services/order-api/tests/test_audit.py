"""The audit trail cannot be edited through the database or the API, and an edit made around the trigger is
found by ``python -m order_api audit-verify``: the service's runtime role may only append and read, and
whoever can rewrite the table (its owner, a superuser) is caught by the signed checkpoints of
``python -m order_api audit-checkpoint``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.__main__ import main as order_api_cli
from order_api.audit.models import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditLog
from order_api.audit.schemas import CheckpointRecord
from order_api.audit.service import (
    HASHED_FIELDS,
    Broken,
    append_audit,
    checkpoint_signature,
    row_hash,
    verify_audit_chain,
)
from order_api.db import SCHEMA
from order_api.orders.lifecycle import Actor
from order_api.testing import ApiKeys, OrderApiRunner, TwoRoleDatabase
from servicekit.db import create_engine, resolve_database_url
from servicekit.migrations import RuntimeRoleError, upgrade
from servicekit.testing import service_dir

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


# --- who may change the log, and checkpoints outside it ----------------------------------------------------

CHECKPOINT_KEY = base64.b64encode(hashlib.sha256(b"order-api tests: audit checkpoint key").digest()).decode()
FORGER_KEY = base64.b64encode(hashlib.sha256(b"not the checkpoint key").digest()).decode()


def as_asyncpg(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


class OrderApiCommand(Protocol):
    async def __call__(
        self,
        *args: str,
        database_url: str | None,
        key: str | None = CHECKPOINT_KEY,
        var_dir: Path | None = None,
        as_process: bool = False,
    ) -> tuple[int, str]: ...


@pytest.fixture
def order_api_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> OrderApiCommand:
    """``python -m order_api <args>`` with only the settings given here: its exit code and the last line it
    printed (stdout, else stderr). ``as_process``: as ops run it, a process of its own (slower: a Python
    start); otherwise its ``main`` in this process."""

    async def run(
        *args: str,
        database_url: str | None,
        key: str | None = CHECKPOINT_KEY,
        var_dir: Path | None = None,
        as_process: bool = False,
    ) -> tuple[int, str]:
        env = {name: value for name, value in os.environ.items() if not name.startswith("ORDER_API_")}
        settings = {"DATABASE_URL": database_url, "AUDIT_CHECKPOINT_KEY": key, "VAR_DIR": var_dir}
        env.update({f"ORDER_API_{name}": str(value) for name, value in settings.items() if value is not None})
        if as_process:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "order_api",
                *args,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out_bytes, err_bytes = await process.communicate()
            assert process.returncode is not None
            code, out, err = process.returncode, out_bytes.decode(), err_bytes.decode()
        else:
            with monkeypatch.context() as patch:
                for name in os.environ:
                    if name not in env:
                        patch.delenv(name)
                for name, value in env.items():
                    patch.setenv(name, value)
                capsys.readouterr()
                code = await asyncio.to_thread(order_api_cli, list(args))
                out, err = capsys.readouterr()
        lines = (out.strip() or err.strip()).splitlines()
        return code, lines[-1] if lines else ""

    return run


@asynccontextmanager
async def owner_session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session as someone who can rewrite ``audit_log`` (its owner, a superuser): its triggers off, committed
    at the end. On SQLite anyone who can write the file can do it: the triggers are dropped."""
    engine = create_engine(database_url, schema=SCHEMA, pool_size=1)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            if engine.dialect.name == "sqlite":
                await session.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
                await session.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
            else:
                await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
            yield session
            if engine.dialect.name != "sqlite":
                await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    finally:
        await engine.dispose()


async def recompute_chain(session: AsyncSession) -> None:
    """What a careful forger does after editing rows: every hash recomputed, and the chain head set to match."""
    previous = GENESIS_HASH
    rows = list((await session.execute(select(AuditLog).order_by(AuditLog.id))).scalars())
    for row in rows:
        row.prev_hash = previous
        row.row_hash = previous = row_hash({name: getattr(row, name) for name in HASHED_FIELDS})
    await session.execute(
        update(AuditChainHead).values(last_id=rows[-1].id if rows else 0, last_hash=previous)
    )
    await session.flush()


async def rename_operator_in_the_log(session: AsyncSession, *, row_id: int) -> None:
    row = await session.get_one(AuditLog, row_id)
    row.parameters = {**row.parameters, "name": "Mallory"}
    await recompute_chain(session)


async def cut_the_tail(session: AsyncSession) -> None:
    last = await session.scalar(select(func.max(AuditLog.id)))
    await session.execute(delete(AuditLog).where(AuditLog.id == last))
    await recompute_chain(session)


async def hire_three(order_api: OrderApiRunner, api_keys: ApiKeys, **settings: Any) -> None:
    async with order_api(**settings) as api:
        for name in ("Anna", "Boris", "Chen"):
            created = await api.client.post(
                "/v1/admin/operators",
                json={"name": name},
                headers={"Authorization": f"Bearer {api_keys.admin}"},
            )
            assert created.status_code == 201, created.text


REFUSED_TO_THE_RUNTIME_ROLE = [
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "UPDATE audit_log SET actor = 'someone:else'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "INSERT INTO audit_checkpoint VALUES (9, 0, '', now(), '', '')",
    "ALTER TABLE audit_chain_head DISABLE TRIGGER ALL",
    "DROP TABLE audit_checkpoint",
]


async def test_the_runtime_role_may_only_append_to_and_read_the_audit_log(
    two_role_database: TwoRoleDatabase,
) -> None:
    engine = create_engine(two_role_database.runtime_url, schema=SCHEMA, pool_size=1)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
            await append_rows(session, 2)
        async with AsyncSession(engine) as session:
            assert await verify_audit_chain(session) is None
            assert await session.scalar(select(func.count()).select_from(AuditLog)) == 2
    finally:
        await engine.dispose()

    connection = await asyncpg.connect(
        as_asyncpg(two_role_database.runtime_url), server_settings={"search_path": SCHEMA}
    )
    try:
        assert await connection.fetchval("SELECT current_user") == two_role_database.runtime_role
        for statement in REFUSED_TO_THE_RUNTIME_ROLE:
            # refused for want of the right ("permission denied", "must be owner"), before any trigger runs
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError, match=r"permission|owner"):
                await connection.execute(statement)
        owners = await connection.fetch(
            "SELECT tablename, tableowner FROM pg_tables WHERE schemaname = $1", SCHEMA
        )
    finally:
        await connection.close()
    owned = {row["tablename"] for row in owners if row["tableowner"] == two_role_database.runtime_role}
    assert owned == {"outbox"}, "the runtime role owns only the table it vacuums itself"


async def test_migrations_refuse_a_runtime_role_that_is_the_migrating_role(own_database_url: str) -> None:
    with pytest.raises(RuntimeRoleError, match="is the role running the migrations"):
        await asyncio.to_thread(
            upgrade, service_dir("order-api"), url=own_database_url, runtime_role="postgres"
        )


async def test_a_checkpointed_log_verifies_and_each_checkpoint_extends_the_last(
    order_api: OrderApiRunner,
    two_role_database: TwoRoleDatabase,
    api_keys: ApiKeys,
    order_api_command: OrderApiCommand,
) -> None:
    owner, runtime = two_role_database.owner_url, two_role_database.runtime_url
    code, said = await order_api_command("audit-checkpoint", database_url=owner)
    printed = CheckpointRecord.model_validate_json(said.removeprefix("OK: checkpoint 1 covers 0 rows "))
    assert code == 0
    assert (printed.id, printed.row_count, printed.head_hash) == (1, 0, GENESIS_HASH)
    assert [printed.signature] == await checkpoint_signatures(owner)
    await hire_three(order_api, api_keys, database_url=runtime)
    code, said = await order_api_command("audit-checkpoint", database_url=owner)
    assert (code, said.split(" {")[0]) == (0, "OK: checkpoint 2 covers 3 rows")
    assert await order_api_command("audit-verify", database_url=owner, as_process=True) == (
        0,
        "OK: the audit chain of 3 rows is intact; 2 signed checkpoints agree with it (the newest covers 3 rows)",
    )
    assert await order_api_command("audit-verify", "--max-checkpoint-age", "5", database_url=runtime) == (
        0,
        "OK: the audit chain of 3 rows is intact; 2 signed checkpoints agree with it (the newest covers 3 rows)",
    )
    # the service's own role reads the log but cannot checkpoint it; without the key there is no verdict
    code, said = await order_api_command("audit-checkpoint", database_url=runtime)
    assert code == 2
    assert "permission denied for table audit_checkpoint" in said
    assert await order_api_command("audit-verify", database_url=owner, key=None) == (
        2,
        "cannot audit-verify: ORDER_API_AUDIT_CHECKPOINT_KEY is not set: the 2 checkpoints cannot be checked",
    )


async def checkpoint_signatures(database_url: str) -> list[str]:
    connection = await asyncpg.connect(as_asyncpg(database_url), server_settings={"search_path": SCHEMA})
    try:
        return [
            row[0] for row in await connection.fetch("SELECT signature FROM audit_checkpoint ORDER BY id")
        ]
    finally:
        await connection.close()


async def test_no_recent_checkpoint_fails_verification_when_one_is_required(
    own_database_url: str, order_api_command: OrderApiCommand
) -> None:
    assert await order_api_command(
        "audit-verify", "--max-checkpoint-age", "60", database_url=own_database_url
    ) == (
        1,
        "BROKEN: no checkpoint in the last 60 minutes (none was ever taken): is audit-checkpoint running?",
    )


async def rename_the_second_operator(session: AsyncSession) -> None:
    await rename_operator_in_the_log(session, row_id=2)


TAMPERING: dict[str, tuple[Callable[[AsyncSession], Awaitable[None]], str]] = {
    "an edited row, its chain recomputed": (
        rename_the_second_operator,
        "BROKEN at audit_checkpoint 1: the chain's hash at row 3 is not the one checkpointed at {at}: "
        "rows 1 to 3 were rewritten",
    ),
    "the tail row deleted, the head set back": (
        cut_the_tail,
        "BROKEN at audit_checkpoint 1: it covered 3 rows but the log has 2: rows 3 to 3 were removed",
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING), ids=["edit-and-rechain", "cut-the-tail"])
async def test_a_rewritten_or_cut_log_fails_verification_against_its_checkpoint(
    order_api: OrderApiRunner,
    two_role_database: TwoRoleDatabase,
    api_keys: ApiKeys,
    order_api_command: OrderApiCommand,
    tampering: str,
) -> None:
    tamper, verdict = TAMPERING[tampering]
    owner = two_role_database.owner_url
    await hire_three(order_api, api_keys, database_url=two_role_database.runtime_url)
    assert (await order_api_command("audit-checkpoint", database_url=owner))[0] == 0

    async with owner_session(owner) as session:  # a superuser, around the trigger
        await tamper(session)
        assert await verify_audit_chain(session) is None, "the chain alone cannot tell"
        at = await session.scalar(select(AuditCheckpoint.checkpointed_at))
    assert at is not None
    expected = verdict.format(at=at.astimezone(UTC).isoformat(timespec="microseconds"))
    assert await order_api_command("audit-verify", database_url=owner, as_process=True) == (1, expected)
    assert await order_api_command("audit-checkpoint", database_url=owner) == (
        1,
        f"{expected}; no checkpoint taken",
    )


async def test_a_checkpoint_forged_without_the_key_fails_verification(
    order_api: OrderApiRunner,
    two_role_database: TwoRoleDatabase,
    api_keys: ApiKeys,
    order_api_command: OrderApiCommand,
) -> None:
    owner = two_role_database.owner_url
    await hire_three(order_api, api_keys, database_url=two_role_database.runtime_url)
    assert (await order_api_command("audit-checkpoint", database_url=owner))[0] == 0

    # The forger rewrites row 2, recomputes the chain and signs a matching checkpoint with a key of their own.
    async with owner_session(owner) as session:
        await rename_operator_in_the_log(session, row_id=2)
        head = await session.get_one(AuditChainHead, 1)
        checkpoint = await session.get_one(AuditCheckpoint, 1)
        checkpoint.head_hash = head.last_hash
        checkpoint.signature = checkpoint_signature(
            base64.b64decode(FORGER_KEY),
            checkpoint_id=1,
            row_count=checkpoint.row_count,
            head_hash=checkpoint.head_hash,
            checkpointed_at=checkpoint.checkpointed_at,
            previous_signature=checkpoint.previous_signature,
        )
    assert await order_api_command("audit-verify", database_url=owner, key=FORGER_KEY) == (
        0,
        "OK: the audit chain of 3 rows is intact; 1 signed checkpoint agrees with it (the newest covers 3 rows)",
    ), "with the forger's key it holds: only the real key tells"
    assert await order_api_command("audit-verify", database_url=owner, as_process=True) == (
        1,
        "BROKEN at audit_checkpoint 1: its signature was not made with the checkpoint key (a forged checkpoint)",
    )


async def test_checkpoints_find_a_cut_tail_on_the_embedded_sqlite_database(
    order_api: OrderApiRunner, tmp_path: Path, api_keys: ApiKeys, order_api_command: OrderApiCommand
) -> None:
    var_dir = tmp_path / "embedded"
    url = resolve_database_url(None, var_dir=var_dir, service_name="order-api")
    await asyncio.to_thread(upgrade, service_dir("order-api"), url=url)
    await hire_three(order_api, api_keys, database_url=None, var_dir=var_dir)
    code, said = await order_api_command("audit-checkpoint", database_url=None, var_dir=var_dir)
    assert (code, said.split(" {")[0]) == (0, "OK: checkpoint 1 covers 3 rows")

    async with owner_session(url) as session:
        await cut_the_tail(session)
        assert await verify_audit_chain(session) is None
    assert await order_api_command("audit-verify", database_url=None, var_dir=var_dir, as_process=True) == (
        1,
        "BROKEN at audit_checkpoint 1: it covered 3 rows but the log has 2: rows 3 to 3 were removed",
    )


async def test_checkpoints_kept_outside_the_database_find_a_tail_cut_with_its_checkpoints(
    order_api: OrderApiRunner,
    two_role_database: TwoRoleDatabase,
    api_keys: ApiKeys,
    order_api_command: OrderApiCommand,
    tmp_path: Path,
) -> None:
    """A superuser who cuts the tail, deletes the checkpoints that covered it and lets the next scheduled run
    checkpoint what is left leaves a database that agrees with itself; the lines the checkpoint job printed
    (its log, kept elsewhere) do not."""
    owner = two_role_database.owner_url
    await hire_three(order_api, api_keys, database_url=two_role_database.runtime_url)
    code, said = await order_api_command("audit-checkpoint", database_url=owner)
    assert code == 0
    job_log = tmp_path / "audit-checkpoint.log"
    job_log.write_text(f"2026-12-06T05:00:00Z {said}\n")

    async with owner_session(owner) as session:
        await cut_the_tail(session)
        await session.execute(delete(AuditCheckpoint))
    code, said = await order_api_command("audit-checkpoint", database_url=owner)
    assert (code, said.split(" {")[0]) == (0, "OK: checkpoint 1 covers 2 rows")
    assert (await order_api_command("audit-verify", database_url=owner))[0] == 0, "the database alone agrees"

    assert await order_api_command(
        "audit-verify", "--known-checkpoints", str(job_log), database_url=owner, as_process=True
    ) == (1, "BROKEN at audit_checkpoint 1: it covered 3 rows but the log has 2: rows 3 to 3 were removed")
    forged = CheckpointRecord.model_validate_json(said[said.index("{") :]).model_copy(update={"row_count": 1})
    job_log.write_text(forged.model_dump_json() + "\n")
    assert await order_api_command(
        "audit-verify", "--known-checkpoints", str(job_log), database_url=owner
    ) == (
        1,
        "BROKEN at audit_checkpoint 1: the copy given is not signed with the checkpoint key",
    )
