"""Idempotency-Key store, and the request seed each confirm attempt was made under.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        # Hash of method, path and body: the same key with anything else is a 422.
        sa.Column("request_hash", sa.Text, nullable=False),
        # Seeds the ids of what the request creates, so a re-run after a crash
        # makes the same payment and sends Stripe the same idempotency keys.
        sa.Column("seed", UUID, nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("state", sa.Text, nullable=False, server_default="in_flight"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_headers", JSONB),
        sa.Column("response_body", sa.LargeBinary),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.CheckConstraint("state IN ('in_flight', 'done', 'retryable')", name="state_valid"),
        sa.CheckConstraint("length(key) BETWEEN 1 AND 255", name="key_length"),
    )
    op.create_index("idempotency_keys_created", "idempotency_keys", ["created_at"])
    op.add_column("payment_attempts", sa.Column("request_seed", UUID))


def downgrade() -> None:
    op.drop_column("payment_attempts", "request_seed")
    op.drop_table("idempotency_keys")
