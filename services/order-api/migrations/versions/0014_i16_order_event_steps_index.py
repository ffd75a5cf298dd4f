"""an order's history indexed by status reached

``ix_order_event_order_id_to_status`` on ``(order_id, to_status, created_at)`` replaces ``ix_order_event_order_id``:
it serves every lookup of an order's history the old one served (its first column), and the order statistics
(``GET /v1/stats/orders``) find when an order was first and last taken, and who cancelled it, through the
index, one order at a time, at any size of the table. One index replaces another, so writing history costs
no more.

Revision ID: 0014_i16_order_event_steps_index
Revises: 0013_i16_operator_workload
Create Date: 2026-12-06 14:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0014_i16_order_event_steps_index'
down_revision: str | None = '0013_i16_operator_workload'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f('ix_order_event_order_id_to_status'),
        'order_event',
        ['order_id', 'to_status', 'created_at'],
        unique=False,
    )
    op.drop_index(op.f('ix_order_event_order_id'), table_name='order_event')


def downgrade() -> None:
    op.create_index(op.f('ix_order_event_order_id'), 'order_event', ['order_id'], unique=False)
    op.drop_index(op.f('ix_order_event_order_id_to_status'), table_name='order_event')
