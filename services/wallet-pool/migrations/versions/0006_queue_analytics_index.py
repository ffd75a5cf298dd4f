"""queue analytics: orders indexed by when they entered the queue

``ix_allocation_enqueued_at`` (partial: ``enqueued_at IS NOT NULL``): ``GET /v1/stats/queue`` reads the
orders that entered the wait queue in a window (arrivals, abandonment, peak hours) without reading every
allocation. Only queued orders have an entry, so the common allocation (a free wallet at once) writes nothing
more; the hand-over (``allocated_at``) and release (``released_at``) were indexed already.

Revision ID: 0006_queue_analytics_index
Revises: 0005_i14_outbox_dead_index
Create Date: 2026-12-06 14:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006_queue_analytics_index'
down_revision: str | None = '0005_i14_outbox_dead_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        'ix_allocation_enqueued_at',
        'allocation',
        ['enqueued_at'],
        unique=False,
        postgresql_where=sa.text('enqueued_at IS NOT NULL'),
        sqlite_where=sa.text('enqueued_at IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_allocation_enqueued_at', table_name='allocation')
