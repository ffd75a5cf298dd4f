"""outbox claimed from its head

- ``ix_outbox_pending`` on ``(created_at, id)`` instead of ``available_at``: the relay reads the head of the
  queue oldest first a page at a time, off this index, instead of sorting every pending event on each claim
  (``servicekit.outbox.OutboxRelay.claim``); with ``available_at`` out of the index a lease is a HOT update.
- PostgreSQL only: per-table autovacuum for ``outbox``. Every event is an insert and two updates; under the
  default thresholds the table went unanalyzed while thousands of events were pending, and the planner's
  estimates for the relay's queries were those of an empty table. ``autovacuum_naptime`` is server-wide and
  stays an operations setting.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 16:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text('delivered_at IS NULL AND dead_at IS NULL')
AUTOVACUUM = {
    'autovacuum_vacuum_scale_factor': '0',
    'autovacuum_vacuum_threshold': '1000',
    'autovacuum_vacuum_cost_delay': '0',
    'autovacuum_vacuum_insert_scale_factor': '0',
    'autovacuum_vacuum_insert_threshold': '1000',
    'autovacuum_analyze_scale_factor': '0',
    'autovacuum_analyze_threshold': '1000',
}


def _postgres() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def upgrade() -> None:
    op.drop_index('ix_outbox_pending', table_name='outbox', postgresql_where=PENDING, sqlite_where=PENDING)
    op.create_index('ix_outbox_pending', 'outbox', ['created_at', 'id'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
    if _postgres():
        options = ', '.join(f'{name} = {value}' for name, value in AUTOVACUUM.items())
        op.execute(f'ALTER TABLE outbox SET ({options})')


def downgrade() -> None:
    if _postgres():
        op.execute(f'ALTER TABLE outbox RESET ({", ".join(AUTOVACUUM)})')
    op.drop_index('ix_outbox_pending', table_name='outbox', postgresql_where=PENDING, sqlite_where=PENDING)
    op.create_index('ix_outbox_pending', 'outbox', ['available_at'], unique=False, postgresql_where=PENDING, sqlite_where=PENDING)
