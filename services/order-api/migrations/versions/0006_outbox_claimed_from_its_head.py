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

from servicekit.migrations import (
    OUTBOX_AUTOVACUUM,
    rebuild_outbox_pending_index,
    reset_autovacuum,
    set_autovacuum,
)

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    rebuild_outbox_pending_index(['created_at', 'id'])
    set_autovacuum(['outbox'], OUTBOX_AUTOVACUUM)


def downgrade() -> None:
    reset_autovacuum(['outbox'], OUTBOX_AUTOVACUUM)
    rebuild_outbox_pending_index(['available_at'])
