"""order-api's migrations create exactly what its models declare, inside its own schema only."""

from order_api.db import SCHEMA
from servicekit.testing import check_migrations


async def test_upgrade_head_then_alembic_check_finds_no_drift() -> None:
    outside = await check_migrations("order-api", schema=SCHEMA)
    assert outside == [], f"tables outside the {SCHEMA} schema: {outside}"
