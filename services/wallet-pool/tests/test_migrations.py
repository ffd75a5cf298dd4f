"""wallet-pool's migrations create exactly what its models declare, inside its own schema only."""

from servicekit.testing import check_migrations
from wallet_pool.db import SCHEMA


async def test_upgrade_head_then_alembic_check_finds_no_drift() -> None:
    outside = await check_migrations("wallet-pool", schema=SCHEMA)
    assert outside == [], f"tables outside the {SCHEMA} schema: {outside}"
