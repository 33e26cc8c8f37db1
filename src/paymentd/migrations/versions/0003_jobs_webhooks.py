"""Background work: procrastinate's job-queue schema, the webhook inbox, the reconciler's mark.

procrastinate ships its schema as SQL; applying it here means `paymentd migrate`
sets up everything a worker needs. A later procrastinate upgrade adds a paymentd
migration that runs the files procrastinate ships in `sql/migrations/`.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from procrastinate.schema import SchemaManager
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Many statements with PL/pgSQL bodies: sent as they are (exec_driver_sql skips
    # SQLAlchemy's bind parsing); `%` doubled as procrastinate's own apply_schema does,
    # since the driver still formats the query.
    op.get_bind().exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))

    op.create_table(
        "webhook_events",
        # Stripe's event id: the unique key that makes every delivery after the first a no-op.
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payment_intent_id", sa.Text),
        # The event in paymentd's neutral vocabulary (webhooks/codec.py), not Stripe's raw JSON.
        sa.Column("payload", JSONB, nullable=False),
        # webhook: delivered to us; reconciler: found by listing Stripe's events.
        sa.Column("source", sa.Text, nullable=False, server_default="webhook"),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
        sa.Column("processed_at", sa.DateTime(timezone=True)),
        # applied | ignored: <why> (set together with processed_at)
        sa.Column("outcome", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint("source IN ('webhook', 'reconciler')", name="webhook_source_valid"),
    )
    # The reconciler's sweep of rows nobody applied yet.
    op.create_index(
        "webhook_events_unprocessed", "webhook_events", ["received_at"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_index("webhook_events_payment_intent", "webhook_events", ["payment_intent_id", "created"])

    op.create_table(
        "reconciler_marks",
        # One row per high-water mark (today: "stripe_events", the last listing of Stripe's events).
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("clock_timestamp()")),
    )
    # Finding payments the reconciler must look at without scanning every row.
    op.create_index(
        "payments_unsettled", "payments", ["updated_at"],
        postgresql_where=sa.text("status IN ('processing', 'requires_action')"),
    )
    op.create_index(
        "payment_attempts_open", "payment_attempts", ["created_at"],
        postgresql_where=sa.text("outcome IN ('pending', 'unknown')"),
    )


def downgrade() -> None:
    op.drop_index("payment_attempts_open", table_name="payment_attempts")
    op.drop_index("payments_unsettled", table_name="payments")
    op.drop_table("reconciler_marks")
    op.drop_table("webhook_events")
    # procrastinate ships no drop script: remove every object it created, by its prefix.
    op.execute(
        """
        DO $$
        DECLARE r record;
        BEGIN
            FOR r IN SELECT tablename FROM pg_tables
                     WHERE schemaname = current_schema() AND tablename LIKE 'procrastinate\\_%'
            LOOP EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename); END LOOP;
            FOR r IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                     JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate\\_%'
            LOOP EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.sig); END LOOP;
            FOR r IN SELECT t.typname FROM pg_type t
                     JOIN pg_namespace n ON n.oid = t.typnamespace
                     WHERE n.nspname = current_schema() AND t.typname LIKE 'procrastinate\\_%' AND t.typtype IN ('e', 'c')
            LOOP EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', r.typname); END LOOP;
        END $$;
        """
    )
