"""audit checkpoint

The signed checkpoints of the audit log's chain head (``python -m order_api audit-checkpoint``). Who may
write them is a matter of database roles, granted by every migration run (servicekit.migrations): the
service's runtime role may only read them.

Revision ID: 0008_i12_audit_checkpoint
Revises: 0007_i12_retention_erasure
Create Date: 2026-12-06 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0008_i12_audit_checkpoint'
down_revision: str | None = '0007_i12_retention_erasure'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'audit_checkpoint',
        sa.Column('id', sa.BigInteger(), autoincrement=False, nullable=False, comment='Gapless, from 1.'),
        sa.Column('row_count', sa.BigInteger(), nullable=False, comment='Rows of audit_log covered: ids 1 to row_count.'),
        sa.Column('head_hash', sa.String(length=64), nullable=False, comment='row_hash of row row_count (genesis when 0).'),
        sa.Column('checkpointed_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
        sa.Column('previous_signature', sa.String(length=64), nullable=False, comment='signature of checkpoint id - 1.'),
        sa.Column('signature', sa.String(length=64), nullable=False, comment='HMAC-SHA256 hex of the fields above.'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoint')),
    )


def downgrade() -> None:
    op.drop_table('audit_checkpoint')
