"""API-key hygiene and per-account limits: key expiry, last use, an account's request limit,
and the scopes a stored Idempotency-Key answer needs to be replayed.

Revision ID: 0008_auth
Revises: 0007_audit
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0008_auth"
down_revision = "0007_audit"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: the key never expires.
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True)))
    # Written at most once a minute per key and process (auth/usage.py), never per request.
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True)))
    # Requests per second; NULL: the configured default (PAYMENTD_ACCOUNT_RPS); 0: no limit.
    op.add_column("accounts", sa.Column("rate_limit_rps", sa.Integer))
    op.create_check_constraint("accounts_rate_limit_rps_not_negative", "accounts", "rate_limit_rps >= 0")
    # The scopes the route checked when the stored answer was made: a replay needs them too.
    op.add_column("idempotency_keys", sa.Column("required_scopes", ARRAY(sa.Text)))


def downgrade() -> None:
    op.drop_column("idempotency_keys", "required_scopes")
    op.drop_constraint("accounts_rate_limit_rps_not_negative", "accounts")
    op.drop_column("accounts", "rate_limit_rps")
    op.drop_column("api_keys", "last_used_at")
    op.drop_column("api_keys", "expires_at")
