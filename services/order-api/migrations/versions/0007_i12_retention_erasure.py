"""customer erasure: ``customer.erased_at``

An erased customer keeps their row (their orders, financial records, point to it) with the email and its
blind index replaced; ``erased_at`` says when, and makes a second erasure answer as the first.

Revision ID: 0007_i12_retention_erasure
Revises: 0006
Create Date: 2026-12-06 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0007_i12_retention_erasure'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'customer',
        sa.Column(
            'erased_at',
            servicekit.db.UtcDateTime(timezone=True),
            nullable=True,
            comment='When the customer was erased: email, payout addresses and sessions gone.',
        ),
    )


def downgrade() -> None:
    # Not in batch mode: on SQLite that would copy the table, and dropping the old copy would cascade to the
    # customers' sessions. SQLite drops a column in place since 3.35.
    op.drop_column('customer', 'erased_at')
