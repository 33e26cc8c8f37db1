"""Outbound webhooks to the merchant's own applications: endpoints, the event outbox,
per-object sequence counters and the deliveries (outbound/).

Two triggers keep the outbox honest whatever writes it (ORM session, plain SQL, a
payments.sql Batch): an event takes the next `sequence` of its object from a counter
row it locks until COMMIT (so sequences commit in order, with no gaps: a rolled-back
event rolls its number back), and fans out to the account's subscribed endpoints as
delivery rows, with a NOTIFY the workers wake on (sent only if the change commits).

Revision ID: 0014_outbound
Revises: 0013_fraud_rules
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

revision = "0014_outbound"
down_revision = "0013_fraud_rules"
branch_labels = None
depends_on = None

NOW = sa.text("clock_timestamp()")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("account_id", UUID(as_uuid=True), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", ARRAY(sa.Text), nullable=False),
        sa.Column("description", sa.Text),  # sealed (crypto/fields.py): free text
        sa.Column("status", sa.Text, nullable=False, server_default="enabled"),
        sa.Column("status_reason", sa.Text),
        sa.Column("secret", sa.Text, nullable=False),  # sealed
        sa.Column("previous_secret", sa.Text),  # sealed; signs too until previous_secret_expires_at
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failing_since", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("status IN ('enabled', 'paused', 'disabled')", name="webhook_endpoint_status_valid"),
    )
    op.create_index("webhook_endpoints_account", "webhook_endpoints", ["account_id", "created_at"])

    op.create_table(
        "outbound_sequences",
        sa.Column("object_type", sa.Text, primary_key=True),
        sa.Column("object_id", sa.Text, primary_key=True),
        sa.Column("last", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "outbound_events",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("account_id", UUID(as_uuid=True), nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("object_type", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),  # set by the trigger below
        sa.Column("payload", JSONB, nullable=False),  # the object as GET shows it, sealed
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.UniqueConstraint("object_type", "object_id", "sequence", name="outbound_events_object_sequence"),
    )
    op.create_index("outbound_events_account", "outbound_events", ["account_id", "created_at"])

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", UUID(as_uuid=True), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("endpoint_id", UUID(as_uuid=True), sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("event_id", sa.Text, sa.ForeignKey("outbound_events.id"), nullable=False),
        # Order is kept per endpoint and object: "type:id", and the event's sequence.
        sa.Column("object_key", sa.Text, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        # Retries stop this long after it (created, or last redelivered by hand).
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_body", sa.Text),  # sealed; a few hundred bytes at most
        sa.Column("error", sa.Text),
        sa.Column("latency_ms", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="webhook_delivery_status_valid"),
        sa.UniqueConstraint("endpoint_id", "event_id", name="webhook_deliveries_once"),
    )
    op.create_index("webhook_deliveries_log", "webhook_deliveries", ["endpoint_id", "created_at", "id"])
    op.create_index("webhook_deliveries_heads", "webhook_deliveries", ["endpoint_id", "object_key", "sequence"],
                    postgresql_where=sa.text("status = 'pending'"))

    op.execute("""
        CREATE FUNCTION outbound_event_sequence() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO outbound_sequences (object_type, object_id, last)
            VALUES (NEW.object_type, NEW.object_id, 1)
            ON CONFLICT (object_type, object_id) DO UPDATE SET last = outbound_sequences.last + 1
            RETURNING last INTO NEW.sequence;
            RETURN NEW;
        END $$;
        CREATE TRIGGER outbound_event_sequence BEFORE INSERT ON outbound_events
            FOR EACH ROW EXECUTE FUNCTION outbound_event_sequence();

        CREATE FUNCTION outbound_event_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            endpoint record;
        BEGIN
            FOR endpoint IN
                SELECT id, status FROM webhook_endpoints
                WHERE account_id = NEW.account_id AND status IN ('enabled', 'paused')
                  AND ('*' = ANY(events) OR NEW.type = ANY(events))
            LOOP
                INSERT INTO webhook_deliveries (endpoint_id, event_id, object_key, sequence)
                VALUES (endpoint.id, NEW.id, NEW.object_type || ':' || NEW.object_id, NEW.sequence);
                IF endpoint.status = 'enabled' THEN
                    PERFORM pg_notify('paymentd_outbound', endpoint.id::text);
                END IF;
            END LOOP;
            RETURN NULL;
        END $$;
        CREATE TRIGGER outbound_event_fan_out AFTER INSERT ON outbound_events
            FOR EACH ROW EXECUTE FUNCTION outbound_event_fan_out();
    """)


def downgrade() -> None:
    op.execute("DROP TRIGGER outbound_event_fan_out ON outbound_events")
    op.execute("DROP TRIGGER outbound_event_sequence ON outbound_events")
    op.execute("DROP FUNCTION outbound_event_fan_out()")
    op.execute("DROP FUNCTION outbound_event_sequence()")
    op.drop_table("webhook_deliveries")
    op.drop_table("outbound_events")
    op.drop_table("outbound_sequences")
    op.drop_table("webhook_endpoints")
