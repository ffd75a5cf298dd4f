"""order-api's migrations create exactly what its models declare, inside its own schema only, and grant its
runtime role what it needs whichever revision they stop at."""

import asyncio

import asyncpg
from alembic import command

from order_api.db import SCHEMA
from servicekit.migrations import alembic_config
from servicekit.testing import check_migrations, migrated_database, runtime_role, service_dir


async def test_upgrade_head_then_alembic_check_finds_no_drift() -> None:
    outside = await check_migrations("order-api", schema=SCHEMA)
    assert outside == [], f"tables outside the {SCHEMA} schema: {outside}"


async def test_a_downgrade_with_a_runtime_role_grants_it_what_is_left() -> None:
    async with (
        runtime_role("order_api_rt") as role,
        migrated_database("order-api", prefix="order_api_down", runtime_role=role.name) as url,
    ):
        config = alembic_config(service_dir("order-api"), url=url, runtime_role=role.name)
        await asyncio.to_thread(command.downgrade, config, "0006")
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            grants = await connection.fetch(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = $1 AND table_schema = $2",
                role.name,
                SCHEMA,
            )
        finally:
            await connection.close()
    granted = {(row["table_name"], row["privilege_type"]) for row in grants}
    assert ("audit_log", "INSERT") in granted
    assert ("audit_log", "UPDATE") not in granted
    assert "audit_checkpoint" not in {table for table, _ in granted}
