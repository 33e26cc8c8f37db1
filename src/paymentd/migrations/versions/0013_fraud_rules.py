"""Fraud rules (issue 13): each account's rule sets (every version kept, so a decision
can be explained later), the decisions, and the velocity counters the rules read.

Revision ID: 0013_fraud_rules
Revises: 0012_audit_lean
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0013_fraud_rules"
down_revision = "0012_audit_lean"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.create_table(
        "fraud_rule_sets",
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("body", JSONB, nullable=False),  # {"rules": [...], "lists": {...}} as saved
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("version > 0", name="fraud_rule_set_version_positive"),
    )
    op.create_table(
        "fraud_decisions",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("account_id", UUID, nullable=False),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("attempt", sa.Integer),  # the confirm attempt (null at create)
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("rule_set_version", sa.Integer, nullable=False),
        sa.Column("fired", ARRAY(sa.Text), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        # Every input the rules saw, sealed (emails, IPs, user agents are personal data).
        sa.Column("inputs", JSONB, nullable=False),
        # The counters' keys (blind indexes), to count the attempt's outcome against.
        sa.Column("keys", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("errors", JSONB),  # rules that failed to evaluate, and why
        sa.Column("outcome", sa.Text),  # declined | succeeded, once counted
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("stage IN ('create', 'confirm', 'post_auth')", name="fraud_decision_stage_valid"),
        sa.CheckConstraint("action IN ('none', 'allow', 'review', 'block')", name="fraud_decision_action_valid"),
    )
    op.create_index("fraud_decisions_payment", "fraud_decisions", ["payment_id", "created_at"])
    op.create_table(
        "fraud_counters",
        sa.Column("account_id", UUID, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),  # user | email | ip | card
        sa.Column("key", sa.Text, nullable=False),  # the user id, or a blind index
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),  # the minute
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("declines", sa.Integer, nullable=False, server_default="0"),
        sa.Column("successes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("amount", sa.BigInteger, nullable=False, server_default="0"),  # minor units attempted
        sa.PrimaryKeyConstraint("account_id", "kind", "key", "bucket", "currency"),
    )
    op.create_index("fraud_counters_bucket", "fraud_counters", ["bucket"])
    op.create_table(
        "fraud_streaks",
        sa.Column("account_id", UUID, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("declines_in_row", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "kind", "key"),
    )


def downgrade() -> None:
    op.drop_table("fraud_streaks")
    op.drop_table("fraud_counters")
    op.drop_table("fraud_decisions")
    op.drop_table("fraud_rule_sets")
