"""Refunds, saved payment methods, and the receipt-email outbox.

Refund rows are written (status `pending`) before Stripe is called, so the amount
they reserve counts against what is refundable even while the call is in flight.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("reason", sa.Text),
        # Stripe's id, once Stripe has answered; NULL while our create call is in flight.
        sa.Column("provider_refund_id", sa.Text, unique=True),
        sa.Column("failure_reason", sa.Text),
        # The Idempotency-Key seed of the request that reserved it: a re-run resumes it.
        sa.Column("request_seed", UUID),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("amount > 0", name="refund_amount_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')", name="refund_status_valid"
        ),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('duplicate', 'fraudulent', 'requested_by_customer', "
            "'expired_uncaptured_charge')",
            name="refund_reason_valid",
        ),
    )
    op.create_index("refunds_payment_created", "refunds", ["payment_id", "created_at"])
    # The reconciler's look at refunds whose create call never got an answer.
    op.create_index(
        "refunds_unsettled", "refunds", ["updated_at"],
        postgresql_where=sa.text("status IN ('pending', 'requires_action')"),
    )

    op.create_table(
        "payment_methods",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("provider_payment_method_id", sa.Text, nullable=False, unique=True),
        sa.Column("type", sa.Text, nullable=False),
        # Only what a customer may be shown again: brand, last 4, expiry, a label.
        sa.Column("brand", sa.Text),
        sa.Column("last4", sa.Text),
        sa.Column("exp_month", sa.Integer),
        sa.Column("exp_year", sa.Integer),
        sa.Column("label", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("detached_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "payment_methods_user_active", "payment_methods", ["user_id", "created_at"],
        postgresql_where=sa.text("detached_at IS NULL"),
    )

    op.create_table(
        "receipt_emails",
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), primary_key=True),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="queued"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('queued', 'sent', 'skipped', 'failed')", name="receipt_email_status_valid"),
    )
    op.create_index(
        "receipt_emails_due", "receipt_emails", ["next_attempt_at"], postgresql_where=sa.text("status = 'queued'")
    )


def downgrade() -> None:
    op.drop_table("receipt_emails")
    op.drop_table("payment_methods")
    op.drop_table("refunds")
