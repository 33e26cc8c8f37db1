"""Core schema: accounts, API keys, users, payments, attempts, status events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = (
    "requires_payment_method", "requires_confirmation", "requires_action", "processing",
    "requires_capture", "succeeded", "partially_refunded", "refunded", "canceled", "disputed",
)
UUID_PK = dict(primary_key=True, server_default=sa.text("gen_random_uuid()"))


def _now(name: str = "created_at") -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()"))


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", UUID, **UUID_PK),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("details", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("receipt_seq", sa.BigInteger, nullable=False, server_default="0"),
        _now(),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 200", name="name_length"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", UUID, **UUID_PK),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column("name", sa.Text),
        _now(),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "scopes <@ ARRAY['payments:read','payments:write','refunds:write','reports:read','admin']::text[]",
            name="scopes_known",
        ),
    )
    op.create_table(
        "users",
        sa.Column("id", UUID, **UUID_PK),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False, index=True),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text),
        sa.Column("provider_customer_id", sa.Text, unique=True),
        _now(),
        sa.UniqueConstraint("account_id", "external_id"),
    )
    op.create_table(
        "payments",
        sa.Column("id", UUID, **UUID_PK),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("user_id", UUID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.Text, nullable=False, server_default="usd"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("amount_capturable", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("amount_received", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("amount_refunded", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("payment_method_types", ARRAY(sa.Text), nullable=False),
        sa.Column("payment_method", sa.Text),
        sa.Column("capture_method", sa.Text, nullable=False, server_default="automatic"),
        sa.Column("description", sa.Text),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("receipt_email", sa.Text),
        sa.Column("client_secret", sa.Text),
        sa.Column("stripe_payment_intent_id", sa.Text, unique=True),
        sa.Column("next_action", JSONB),
        sa.Column("last_payment_error", JSONB),
        sa.Column("payment_method_details", JSONB),
        sa.Column("receipt_number", sa.Text),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0"),
        _now(),
        _now("updated_at"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_format"),
        sa.CheckConstraint(f"status IN {STATUSES!r}", name="status_valid"),
        sa.CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refunded_within_amount"),
        sa.CheckConstraint("capture_method IN ('automatic', 'manual')", name="capture_method_valid"),
        sa.UniqueConstraint("account_id", "receipt_number"),
    )
    op.execute("CREATE INDEX payments_account_created ON payments (account_id, created_at DESC, id DESC)")
    op.execute("CREATE INDEX payments_account_user_created ON payments (account_id, user_id, created_at DESC, id DESC)")
    op.create_table(
        "payment_attempts",
        sa.Column("id", UUID, **UUID_PK),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("payment_method", sa.Text),
        sa.Column("outcome", sa.Text, nullable=False, server_default="pending"),
        sa.Column("error_code", sa.Text),
        sa.Column("decline_code", sa.Text),
        sa.Column("error_message", sa.Text),
        _now(),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("payment_id", "number"),
        sa.CheckConstraint("number > 0", name="number_positive"),
    )
    op.create_table(
        "payment_events",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("payment_id", UUID, sa.ForeignKey("payments.id"), nullable=False, index=True),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("api_key_id", UUID),
        sa.Column("request_id", sa.Text),
        _now(),
        sa.CheckConstraint("source IN ('api', 'webhook', 'reconciler')", name="source_valid"),
        sa.CheckConstraint(f"to_status IN {STATUSES!r}", name="to_status_valid"),
    )


def downgrade() -> None:
    for table in ("payment_events", "payment_attempts", "payments", "users", "api_keys", "accounts"):
        op.drop_table(table)
