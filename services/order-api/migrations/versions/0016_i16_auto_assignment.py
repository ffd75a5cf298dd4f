"""auto-assignment: one row per order handed to an operator

``order_assignment`` records each auto-assignment (``ORDER_API_AUTO_ASSIGN``): when it lapses unless the
operator acts, and how it ended; one per order and operator, so an order never goes back to an operator who
let it lapse. The index of operators' steps on ``order_event`` comes in 0017, built concurrently.

Revision ID: 0016_i16_auto_assignment
Revises: 0015_i16_order_transactions
Create Date: 2026-12-06 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from servicekit.db import UtcDateTime

revision: str = '0016_i16_auto_assignment'
down_revision: str | None = '0015_i16_order_transactions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text('outcome IS NULL')


def upgrade() -> None:
    op.create_table(
        'order_assignment',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('order_id', sa.String(length=36), nullable=False),
        sa.Column('operator_id', sa.String(length=36), nullable=False),
        sa.Column('assigned_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('lapses_at', UtcDateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=True),
        sa.Column('settled_at', UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "outcome IS NULL OR outcome IN ('accepted', 'lapsed', 'ended')",
            name=op.f('ck_order_assignment_outcome_known'),
        ),
        sa.ForeignKeyConstraint(
            ['operator_id'], ['operator.id'], name=op.f('fk_order_assignment_operator_id_operator')
        ),
        sa.ForeignKeyConstraint(['order_id'], ['order.id'], name=op.f('fk_order_assignment_order_id_order')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_order_assignment')),
        sa.UniqueConstraint('order_id', 'operator_id', name=op.f('uq_order_assignment_order_id_operator_id')),
    )
    op.create_index(
        'ix_order_assignment_pending_lapses_at',
        'order_assignment',
        ['lapses_at'],
        unique=False,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index('ix_order_assignment_pending_lapses_at', table_name='order_assignment')
    op.drop_table('order_assignment')
