"""operators' steps on order_event indexed by actor, built concurrently

``ix_order_event_operator_actor_created_at`` finds when each operator last acted on any order (how long they
have been idle, for auto-assignment); it covers operators' steps only, so intake writes no more.
``order_event`` is the biggest table: on PostgreSQL the index is built ``CONCURRENTLY`` (outside a
transaction, the running services keep writing), after dropping one an interrupted build left invalid.

Revision ID: 0017_i16_operator_steps_index
Revises: 0016_i16_auto_assignment
Create Date: 2026-12-06 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0017_i16_operator_steps_index'
down_revision: str | None = '0016_i16_auto_assignment'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = 'ix_order_event_operator_actor_created_at'
OPERATOR_STEPS = sa.text("actor LIKE 'operator:%'")


def _postgres() -> bool:
    return op.get_context().dialect.name == 'postgresql'


def upgrade() -> None:
    if not _postgres():
        op.create_index(INDEX, 'order_event', ['actor', 'created_at'], sqlite_where=OPERATOR_STEPS)
        return
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name='order_event', postgresql_concurrently=True, if_exists=True)
        op.create_index(
            INDEX,
            'order_event',
            ['actor', 'created_at'],
            postgresql_where=OPERATOR_STEPS,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    if not _postgres():
        op.drop_index(INDEX, table_name='order_event')
        return
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name='order_event', postgresql_concurrently=True)
