"""Encryption at rest: the data-key table, and the blind index users are found by email with.

Existing rows keep their plaintext until the re-encryption job (crypto/reencrypt.py)
seals them under the primary key; readers accept both meanwhile.

Revision ID: 0009_crypto
Revises: 0008_auth
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_crypto"
down_revision = "0008_auth"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.create_table(
        "data_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        # The key-encryption key that wraps it (crypto/keysource.py); the key itself is never stored bare.
        sa.Column("kek_id", sa.Text, nullable=False),
        sa.Column("wrapped", sa.LargeBinary),  # NULL once retired: the key is gone
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("demoted_at", sa.DateTime(timezone=True)),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("purpose IN ('data', 'index')", name="data_key_purpose_valid"),
        sa.CheckConstraint("state IN ('primary', 'active', 'retired')", name="data_key_state_valid"),
        sa.CheckConstraint("(state = 'retired') = (wrapped IS NULL)", name="data_key_retired_has_no_key"),
    )
    op.create_index("data_keys_one_primary", "data_keys", ["purpose"], unique=True,
                    postgresql_where=sa.text("state = 'primary'"))
    op.add_column("users", sa.Column("email_index", sa.Text))
    op.create_index("users_account_email_index", "users", ["account_id", "email_index"])


def downgrade() -> None:
    op.drop_index("users_account_email_index", table_name="users")
    op.drop_column("users", "email_index")
    op.drop_table("data_keys")
