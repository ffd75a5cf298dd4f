"""dead-lettered outbox events indexed

``ix_outbox_dead`` (partial: ``dead_at IS NOT NULL``) on ``(created_at, id)``: operators list the dead-lettered
events newest first (``GET /v1/admin/outbox?status=dead``), and ``/metrics`` and the dead-letter report
count them, without reading the delivered events the outbox keeps for its retention period. It holds only the
few dead rows, so writing events costs nothing more.

Revision ID: 0012_i14_outbox_dead_index
Revises: 0011_i14_intake_awaiting_address
Create Date: 2026-12-06 08:00:00.000000
"""

from collections.abc import Sequence

from servicekit.migrations import create_outbox_dead_index, drop_outbox_dead_index

revision: str = '0012_i14_outbox_dead_index'
down_revision: str | None = '0011_i14_intake_awaiting_address'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_outbox_dead_index()


def downgrade() -> None:
    drop_outbox_dead_index()
