"""Fraud (issue 13): Radar's verdict on payments and attempts, the rule ids that fired,
manual reviews, early fraud warnings, and each account's fraud settings.

Revision ID: 0011_fraud_reviews
Revises: 0010_dashboard
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0011_fraud_reviews"
down_revision = "0010_dashboard"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")
RISK_COLUMNS = ("risk_level", "risk_score", "risk_outcome")


def upgrade() -> None:
    for table in ("payments", "payment_attempts"):
        op.add_column(table, sa.Column("risk_level", sa.Text))
        op.add_column(table, sa.Column("risk_score", sa.Integer))
        op.add_column(table, sa.Column("risk_outcome", sa.Text))
    op.add_column("payment_attempts", sa.Column("risk_reason", sa.Text))
    op.add_column("payments", sa.Column("risk_rules", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")))
    op.add_column("payments", sa.Column("review", JSONB))

    op.add_column("accounts", sa.Column("auto_refund_early_fraud_warnings", sa.Boolean, nullable=False,
                                        server_default=sa.text("true")))
    op.add_column("accounts", sa.Column("review_deadline_hours", sa.Integer))
    op.add_column("accounts", sa.Column("review_deadline_action", sa.Text))
    op.create_check_constraint("account_review_deadline_valid", "accounts",
                               "review_deadline_hours IS NULL OR review_deadline_hours BETWEEN 1 AND 720")
    op.create_check_constraint("account_review_deadline_action_valid", "accounts",
                               "review_deadline_action IS NULL OR review_deadline_action IN ('approve', 'deny')")

    op.create_table(
        "reviews",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'open'")),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("stripe_review_id", sa.Text, unique=True),
        sa.Column("closed_reason", sa.Text),
        # The decision being carried out (money moving at the processor) before it closes.
        sa.Column("decision", sa.Text),
        sa.Column("deadline_at", sa.DateTime(timezone=True)),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("payment_id", "source", name="reviews_one_per_payment_and_source"),
        sa.CheckConstraint("source IN ('rule', 'radar')", name="review_source_valid"),
        sa.CheckConstraint("status IN ('open', 'approved', 'denied')", name="review_status_valid"),
        sa.CheckConstraint("(status = 'open') = (closed_at IS NULL)", name="review_closed_has_time"),
        sa.CheckConstraint("decision IS NULL OR decision IN ('approve', 'deny')", name="review_decision_valid"),
    )
    # The review list (newest first, keyset-paged) and the deadline job's scan.
    op.create_index("reviews_account_status_opened", "reviews", ["account_id", "status", "opened_at", "id"])
    op.create_index("reviews_open_deadline", "reviews", ["deadline_at"], postgresql_where=sa.text("status = 'open'"))

    op.create_table(
        "early_fraud_warnings",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("provider_warning_id", sa.Text, nullable=False, unique=True),
        sa.Column("fraud_type", sa.Text, nullable=False),
        sa.Column("actionable", sa.Boolean, nullable=False),
        sa.Column("refund_id", UUID, sa.ForeignKey("refunds.id")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("early_fraud_warnings_payment", "early_fraud_warnings", ["payment_id", "created_at"])


def downgrade() -> None:
    op.drop_table("early_fraud_warnings")
    op.drop_table("reviews")
    op.drop_constraint("account_review_deadline_action_valid", "accounts")
    op.drop_constraint("account_review_deadline_valid", "accounts")
    for column in ("review_deadline_action", "review_deadline_hours", "auto_refund_early_fraud_warnings"):
        op.drop_column("accounts", column)
    op.drop_column("payments", "review")
    op.drop_column("payments", "risk_rules")
    op.drop_column("payment_attempts", "risk_reason")
    for table in ("payments", "payment_attempts"):
        for column in RISK_COLUMNS:
            op.drop_column(table, column)
