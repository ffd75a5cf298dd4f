"""one open order per deposit address

A deposit address is held by at most one open order (awaiting the deposit or in progress): an address
wallet-pool hands out twice at once is refused by the database, whichever path writes it. Closed orders keep
the address they held (their history), so the index covers open orders only.

Revision ID: 0010_i13_peers_open_address
Revises: 0009_i13_abuse_mailbox_proven
Create Date: 2026-12-06 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010_i13_peers_open_address'
down_revision: str | None = '0009_i13_abuse_mailbox_proven'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_WITH_ADDRESS = "deposit_address IS NOT NULL AND status IN ('awaiting_deposit', 'in_progress')"


def upgrade() -> None:
    op.create_index(
        'uq_order_open_deposit_address',
        'order',
        ['deposit_address'],
        unique=True,
        postgresql_where=sa.text(OPEN_WITH_ADDRESS),
        sqlite_where=sa.text(OPEN_WITH_ADDRESS),
    )


def downgrade() -> None:
    op.drop_index('uq_order_open_deposit_address', table_name='order')
