"""webhook endpoints (signed deliveries to the website): the endpoint table with its sealed secrets, the HTTP
status of each delivery attempt, and an index for an endpoint's delivery log (webhook notifications by
recipient)

Revision ID: 0005_webhook_endpoints
Revises: 0004_i12_sealing_notifications
Create Date: 2026-12-06 14:00:25.031925
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0005_webhook_endpoints'
down_revision: str | None = '0004_i12_sealing_notifications'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_endpoint',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('event_types', sa.JSON(), nullable=False, comment='The event types it receives.'),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False, comment='The signing secret, sealed (servicekit.sealing, context webhook.secret).'),
    sa.Column('previous_secret_sealed', sa.Text(), nullable=True, comment='The secret before the last rotation, sealed; it signs too until it expires.'),
    sa.Column('previous_secret_expires_at', servicekit.db.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint'))
    )
    op.add_column('delivery_attempt', sa.Column('response_status', sa.Integer(), nullable=True, comment='The HTTP status a webhook endpoint answered.'))
    op.create_index('ix_notification_webhook_log', 'notification', ['recipient_index', 'created_at', 'id'], unique=False, postgresql_where=sa.text("channel = 'webhook'"), sqlite_where=sa.text("channel = 'webhook'"))


def downgrade() -> None:
    op.drop_index('ix_notification_webhook_log', table_name='notification', postgresql_where=sa.text("channel = 'webhook'"), sqlite_where=sa.text("channel = 'webhook'"))
    op.drop_column('delivery_attempt', 'response_status')
    op.drop_table('webhook_endpoint')
