"""operator_link goes: order-api's operator record is the one truth about Telegram links

Revision ID: 0003_door_operator_link_goes
Revises: 0002
Create Date: 2026-12-06 05:10:00.000000

The gateway asks order-api who a Telegram user is and caches the answer (Redis, or process memory in the
embedded mode); it keeps no table of links. Downgrading recreates the table empty: operators are then
refused by the older code until they send ``/start <code>`` again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0003_door_operator_link_goes'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table('operator_link')


def downgrade() -> None:
    op.create_table('operator_link',
    sa.Column('telegram_user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('operator_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False, comment='operator, support or admin (as order-api said).'),
    sa.Column('telegram_username', sa.String(length=64), nullable=True),
    sa.Column('linked_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('telegram_user_id', name=op.f('pk_operator_link')),
    sa.UniqueConstraint('operator_id', name=op.f('uq_operator_link_operator_id'))
    )
