"""completion_draft: an operator's answers while completing an order from Telegram

Revision ID: 0004_completion_draft
Revises: 0003_door_operator_link_goes
Create Date: 2026-12-06 17:10:00.000000

The bot asks for the transaction record one question at a time; the answers so far live here (not in a
process), so any replica serving the webhook takes the next reply.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0004_completion_draft'
down_revision: str | None = '0003_door_operator_link_goes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('completion_draft',
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('telegram_user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('prompt_message_id', sa.BigInteger(), nullable=True, comment="The bot's question awaiting the reply; replies to any other message are ignored."),
    sa.Column('version', sa.Integer(), nullable=False, comment="The order's version the Complete button showed."),
    sa.Column('order', sa.JSON(), nullable=False, comment='What the questions show and check: amount, currencies and networks.'),
    sa.Column('step', sa.String(length=16), nullable=False, comment='The question awaiting its answer.'),
    sa.Column('answers', sa.JSON(), nullable=False, comment='Answers given so far, by step.'),
    sa.Column('expires_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', servicekit.db.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('order_id', 'telegram_user_id', name=op.f('pk_completion_draft'))
    )
    op.create_index('ix_completion_draft_expires_at', 'completion_draft', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_completion_draft_expires_at', table_name='completion_draft')
    op.drop_table('completion_draft')
