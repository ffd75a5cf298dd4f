"""notifications keep their recipient and variables sealed, found by a blind index; customer_id for erasure

Rows already there are sealed with the notifier's configured data keys (or its development keys) in the
same step, so no plaintext is left behind; the downgrade opens them again.

Revision ID: 0004_i12_sealing_notifications
Revises: 0003
Create Date: 2026-12-06 05:30:00
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

if TYPE_CHECKING:
    from notifier.protection import DataProtection

revision: str = "0004_i12_sealing_notifications"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTIFICATION = sa.table(
    "notification",
    sa.column("id", sa.String),
    sa.column("channel", sa.String),
    sa.column("recipient", sa.String),
    sa.column("variables", sa.JSON),
    sa.column("recipient_sealed", sa.Text),
    sa.column("recipient_index", sa.String),
    sa.column("variables_sealed", sa.Text),
)


def _protection() -> "DataProtection":
    """The notifier's configured data keys (its development keys outside production), read only when there
    are rows to seal or open."""
    from notifier.protection import DataProtection
    from notifier.settings import Settings

    return DataProtection.from_settings(Settings())


def upgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(
            sa.Column(
                "recipient_sealed",
                sa.Text(),
                nullable=True,
                comment="Personal data, sealed (servicekit.sealing, context notification.recipient); null once erased.",
            )
        )
        batch.add_column(
            sa.Column(
                "recipient_index",
                sa.String(length=64),
                nullable=True,
                comment="Blind index of the recipient (one message per event and recipient).",
            )
        )
        batch.add_column(
            sa.Column(
                "variables_sealed",
                sa.Text(),
                nullable=True,
                comment="Template variables, sealed (context notification.variables); one-time secrets removed once sent; null once erased.",
            )
        )
        batch.add_column(
            sa.Column(
                "customer_id",
                sa.String(length=64),
                nullable=True,
                comment="The customer it is about (erasure); null for staff messages.",
            )
        )
    connection = op.get_bind()
    n = _NOTIFICATION
    rows = connection.execute(sa.select(n.c.id, n.c.channel, n.c.recipient, n.c.variables)).all()
    if rows:
        protection = _protection()
        for row in rows:
            connection.execute(
                n.update()
                .where(n.c.id == row.id)
                .values(
                    recipient_sealed=protection.seal_recipient(row.recipient),
                    recipient_index=protection.recipient_index(row.channel, row.recipient),
                    variables_sealed=protection.seal_variables(row.variables or {}),
                )
            )
    with op.batch_alter_table("notification") as batch:
        batch.drop_constraint("uq_notification_event_id_template_recipient", type_="unique")
        batch.create_unique_constraint(
            "uq_notification_event_id_template_recipient_index", ["event_id", "template", "recipient_index"]
        )
        batch.drop_column("recipient")
        batch.drop_column("variables")
        batch.alter_column(
            "subject",
            existing_type=sa.String(length=300),
            existing_nullable=True,
            comment="Set when rendered (templates put no personal data in subjects).",
            existing_comment="Set when rendered.",
        )
        batch.create_index("ix_notification_customer_id", ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notification") as batch:
        batch.add_column(
            sa.Column(
                "recipient",
                sa.String(length=320),
                nullable=True,
                comment="Personal data: never logged in clear.",
            )
        )
        batch.add_column(sa.Column("variables", sa.JSON(), nullable=True))
    connection = op.get_bind()
    n = _NOTIFICATION
    rows = connection.execute(sa.select(n.c.id, n.c.recipient_sealed, n.c.variables_sealed)).all()
    if rows:
        protection = _protection()
        for row in rows:
            connection.execute(
                n.update()
                .where(n.c.id == row.id)
                .values(
                    recipient=protection.open_recipient(row.recipient_sealed) if row.recipient_sealed else "",
                    variables=protection.open_variables(row.variables_sealed) if row.variables_sealed else {},
                )
            )
    with op.batch_alter_table("notification") as batch:
        batch.drop_index("ix_notification_customer_id")
        batch.drop_constraint("uq_notification_event_id_template_recipient_index", type_="unique")
        batch.alter_column("recipient", existing_type=sa.String(length=320), nullable=False)
        batch.alter_column("variables", existing_type=sa.JSON(), nullable=False)
        batch.create_unique_constraint(
            "uq_notification_event_id_template_recipient", ["event_id", "template", "recipient"]
        )
        batch.drop_column("customer_id")
        batch.drop_column("variables_sealed")
        batch.drop_column("recipient_index")
        batch.drop_column("recipient_sealed")
        batch.alter_column(
            "subject",
            existing_type=sa.String(length=300),
            existing_nullable=True,
            comment="Set when rendered.",
            existing_comment="Set when rendered (templates put no personal data in subjects).",
        )
