"""operators' workload: a cap on held orders and presence

``operator.max_held_orders`` caps the orders one operator holds in progress at once (null: the desk's
default, ``ORDER_API_OPERATOR_MAX_HELD_ORDERS``); ``operator.presence`` (``available`` or ``away``) and
``presence_since`` record whether they are at the desk, and since when. Existing operators are available.

Revision ID: 0013_i16_operator_workload
Revises: 0012_i14_outbox_dead_index
Create Date: 2026-12-06 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from servicekit.db import UtcDateTime

revision: str = '0013_i16_operator_workload'
down_revision: str | None = '0012_i14_outbox_dead_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('operator') as batch:
        batch.add_column(
            sa.Column(
                'max_held_orders',
                sa.Integer(),
                nullable=True,
                comment="Null: the desk's default cap (ORDER_API_OPERATOR_MAX_HELD_ORDERS).",
            )
        )
        batch.add_column(sa.Column('presence', sa.String(length=16), server_default='available', nullable=False))
        batch.add_column(
            sa.Column(
                'presence_since',
                UtcDateTime(timezone=True),
                nullable=True,
                comment='When presence last changed; null: never set (available since created).',
            )
        )
        batch.create_check_constraint('presence_known', "presence IN ('available', 'away')")
        batch.create_check_constraint(
            'max_held_orders_positive', 'max_held_orders IS NULL OR max_held_orders >= 1'
        )


def downgrade() -> None:
    with op.batch_alter_table('operator') as batch:
        batch.drop_constraint('max_held_orders_positive', type_='check')
        batch.drop_constraint('presence_known', type_='check')
        batch.drop_column('presence_since')
        batch.drop_column('presence')
        batch.drop_column('max_held_orders')
