"""Inbound trust: payments to verify with the processor after an inconsistent report,
and a webhook inbox whose payloads can be purged (kept only for the retention time).

Revision ID: 0006_inbound
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0006_inbound"
down_revision = "0005"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    # One row per payment whose processor report was refused as inconsistent: asked
    # about again (payments/verification.py) until the processor's own answer is applied.
    op.create_table(
        "payment_verifications",
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), primary_key=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
    )
    # A purged event keeps its row (its id recognizes a late redelivery) without its payload.
    op.alter_column("webhook_events", "payload", nullable=True)
    op.create_index("webhook_events_purgeable", "webhook_events", ["processed_at"],
                    postgresql_where=sa.text("payload IS NOT NULL AND processed_at IS NOT NULL"))
    op.create_index("webhook_events_received", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_index("webhook_events_received", "webhook_events")
    op.drop_index("webhook_events_purgeable", "webhook_events")
    op.execute("DELETE FROM webhook_events WHERE payload IS NULL")
    op.alter_column("webhook_events", "payload", nullable=False)
    op.drop_table("payment_verifications")
