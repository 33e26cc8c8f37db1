"""Disputes: one row per Stripe dispute, with its status and, once closed, its outcome.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        # Stripe's id: events for the same dispute update the same row.
        sa.Column("provider_dispute_id", sa.Text, nullable=False, unique=True),
        sa.Column("charge_id", sa.Text),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text),
        sa.Column("evidence_due_by", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("amount >= 0", name="dispute_amount_not_negative"),
        sa.CheckConstraint("outcome IS NULL OR outcome IN ('won', 'lost')", name="dispute_outcome_valid"),
    )
    op.create_index("disputes_payment_created", "disputes", ["payment_id", "created_at"])


def downgrade() -> None:
    op.drop_table("disputes")
