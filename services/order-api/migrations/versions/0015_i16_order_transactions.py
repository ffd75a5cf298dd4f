"""the transaction record on the order: deposit, payout and payment outcome

Columns of ``order`` rather than a table of their own: an order has at most one record, it is read with the
order on every read that shows it (the customer's and the operator's), written by the same versioned
``UPDATE`` that completes the order (or by the hold that records a deposit), and summed over the same rows
the order statistics already scan. Every column is nullable without a default, so adding them rewrites no
row (PostgreSQL only changes the catalogue).

Revision ID: 0015_i16_order_transactions
Revises: 0014_i16_order_event_steps_index
Create Date: 2026-12-06 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import servicekit.db

revision: str = '0015_i16_order_transactions'
down_revision: str | None = '0014_i16_order_event_steps_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('deposit_tx_hash', sa.String(length=128), "The customer's deposit transaction (recorded on completion or on a hold)."),
    ('deposit_amount', servicekit.db.Money(), 'What arrived, in from_currency.'),
    ('deposit_seen_at', servicekit.db.UtcDateTime(), 'When the deposit was seen.'),
    ('payout_tx_hash', sa.String(length=128), "The desk's payout transaction."),
    ('payout_amount', servicekit.db.Money(), 'What was sent, in to_currency.'),
    ('payout_network_fee', servicekit.db.Money(), "The payout's network fee in to_currency, if known."),
    ('payment_outcome', sa.String(length=16), 'exact, underpaid or overpaid: the deposit against the amount, on completion.'),
)


def upgrade() -> None:
    with op.batch_alter_table('order') as batch:
        for name, type_, comment in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True, comment=comment))


def downgrade() -> None:
    with op.batch_alter_table('order') as batch:
        for name, _type, _comment in reversed(COLUMNS):
            batch.drop_column(name)
