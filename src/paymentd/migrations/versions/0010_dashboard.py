"""Dashboard sessions (dashboard/sessions.py), and the `dashboard` scope a key signs in with.

A session row is what the browser's cookie names: the cookie holds a random token, the
row only its SHA-256 (a database read does not give a session away), the key it was
opened with, and its CSRF token. No IP or user agent is kept (they would be personal data).

Revision ID: 0010_dashboard
Revises: 0009_crypto
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0010_dashboard"
down_revision = "0009_crypto"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")
SCOPES_BEFORE = "'payments:read', 'payments:write', 'refunds:write', 'reports:read', 'admin', 'audit:read'"


def upgrade() -> None:
    op.execute(f"""
        ALTER TABLE api_keys DROP CONSTRAINT scopes_known;
        ALTER TABLE api_keys ADD CONSTRAINT scopes_known CHECK (
            scopes <@ ARRAY[{SCOPES_BEFORE}, 'dashboard']::text[]);
    """)
    op.create_table(
        "dashboard_sessions",
        sa.Column("id", UUID, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("token_hash", sa.Text, nullable=False, unique=True),
        sa.Column("api_key_id", UUID, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
        sa.Column("account_id", UUID, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("csrf_token", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.create_index("dashboard_sessions_api_key", "dashboard_sessions", ["api_key_id"])
    op.create_index("dashboard_sessions_last_seen", "dashboard_sessions", ["last_seen_at"])


def downgrade() -> None:
    op.drop_table("dashboard_sessions")
    op.execute(f"""
        UPDATE api_keys SET scopes = array_remove(scopes, 'dashboard');
        ALTER TABLE api_keys DROP CONSTRAINT scopes_known;
        ALTER TABLE api_keys ADD CONSTRAINT scopes_known CHECK (scopes <@ ARRAY[{SCOPES_BEFORE}]::text[]);
    """)
