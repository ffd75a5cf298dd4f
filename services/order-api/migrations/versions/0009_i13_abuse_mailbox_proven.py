"""order: mailbox_proven; client_ip holds the client's network

The open-order cap per customer can no longer be filled by someone who merely knows the email: orders placed
with a session proven by the emailed code count against the customer's own cap, orders placed with just the
email count per client network. Existing orders placed under a full session are marked proven.

Revision ID: 0009_i13_abuse_mailbox_proven
Revises: 0008_i12_audit_checkpoint
Create Date: 2026-12-06 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009_i13_abuse_mailbox_proven'
down_revision: str | None = '0008_i12_audit_checkpoint'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CLIENT_IP_COMMENT = "The client's network as per-client limits count it: an IPv4 address, an IPv6 /64."
MAILBOX_PROVEN_COMMENT = (
    "Placed with a session proven by the emailed code: counts against the customer's own cap; "
    "otherwise against the email's cap from this client network."
)


def upgrade() -> None:
    op.add_column(
        'order',
        sa.Column(
            'mailbox_proven',
            sa.Boolean(),
            server_default=sa.false(),
            nullable=False,
            comment=MAILBOX_PROVEN_COMMENT,
        ),
    )
    if op.get_context().dialect.name == 'postgresql':  # SQLite keeps no comments
        op.alter_column(
            'order',
            'client_ip',
            existing_type=sa.String(length=45),
            existing_nullable=False,
            comment=CLIENT_IP_COMMENT,
        )
    op.execute(
        "UPDATE \"order\" SET mailbox_proven = true WHERE session_id IN "
        "(SELECT id FROM customer_session WHERE kind = 'full')"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == 'postgresql':
        op.alter_column(
            'order',
            'client_ip',
            existing_type=sa.String(length=45),
            existing_nullable=False,
            comment=None,
            existing_comment=CLIENT_IP_COMMENT,
        )
    # Not in batch mode: on SQLite that would copy the table; SQLite drops a column in place since 3.35.
    op.drop_column('order', 'mailbox_proven')
