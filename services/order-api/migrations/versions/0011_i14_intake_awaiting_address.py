"""orders awaiting their address; idempotency keys know their order; unannounced orders are found fast

- An order wallet-pool has not answered for yet (allocation ``pending``) is ``awaiting_address``, not
  ``queued``: it has no place in any queue until wallet-pool gives it one.
- ``idempotency_key.order_id``: the order a key's request wrote, so that a retry of a request that died
  after writing it gets that order (no foreign key: intake writes both in one statement, and a check per
  order costs the busiest call of the desk a lookup for nothing).
- ``ix_order_unannounced``: orders whose ``order.created`` has not gone out (a crash mid-intake), for the
  sweeper that announces them.
- Closed orders carry no queue fields.

Revision ID: 0011_i14_intake_awaiting_address
Revises: 0010_i13_peers_open_address
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011_i14_intake_awaiting_address'
down_revision: str | None = '0010_i13_peers_open_address'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNANNOUNCED = "announced_at IS NULL"


def upgrade() -> None:
    op.add_column(
        'idempotency_key',
        sa.Column(
            'order_id',
            sa.String(length=36),
            nullable=True,
            comment="The order the key's request wrote (written with it, in the same transaction).",
        ),
    )
    op.create_index(
        'ix_order_unannounced',
        'order',
        ['created_at'],
        postgresql_where=sa.text(UNANNOUNCED),
        sqlite_where=sa.text(UNANNOUNCED),
    )
    op.execute(
        """UPDATE "order" SET status = 'awaiting_address'"""
        """ WHERE status = 'queued' AND allocation_state = 'pending'"""
    )
    op.execute(
        """UPDATE "order" SET queue_position = NULL, estimated_wait_seconds = NULL"""
        """ WHERE status IN ('completed', 'cancelled', 'expired')"""
        """ AND (queue_position IS NOT NULL OR estimated_wait_seconds IS NOT NULL)"""
    )


def downgrade() -> None:
    op.execute(
        """UPDATE "order" SET status = 'queued' WHERE status = 'awaiting_address'"""
    )
    op.drop_index('ix_order_unannounced', table_name='order')
    op.drop_column('idempotency_key', 'order_id')
