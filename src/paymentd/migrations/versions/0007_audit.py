"""The audit trail: hash-chained entries, chain heads, signed checkpoints.

Entries can never be changed or deleted through paymentd: triggers refuse UPDATE
(except of `personal`, the sealed personal data, for re-encryption and erasure),
DELETE and TRUNCATE, for every role including the owner; only a superuser who
bypasses triggers (session_replication_role=replica) can, and `paymentd audit
verify` then names what changed.

Revision ID: 0007_audit
Revises: 0006_inbound
"""

from alembic import op

revision = "0007_audit"
down_revision = "0006_inbound"
branch_labels = None
depends_on = None

# Independent chains: a transaction seals onto whichever head is free, so writers in
# many processes never wait on one lock, and no chain can fork (its head row is locked).
CHAINS = 16

GENESIS = "0" * 64


def upgrade() -> None:
    op.execute(f"""
        CREATE TABLE audit_chains (
            chain integer PRIMARY KEY,
            length bigint NOT NULL DEFAULT 0,
            head_hash text NOT NULL DEFAULT '{GENESIS}',
            updated_at timestamptz
        );
        INSERT INTO audit_chains (chain) SELECT generate_series(0, {CHAINS - 1});

        CREATE TABLE audit_entries (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id uuid NOT NULL,
            chain integer NOT NULL REFERENCES audit_chains (chain),
            chain_seq bigint NOT NULL,
            at timestamptz NOT NULL,
            account_id uuid,
            actor_type text NOT NULL,
            actor_id text,
            action text NOT NULL,
            object_type text,
            object_id text,
            request_id text,
            client_ip text,
            outcome text NOT NULL,
            count integer NOT NULL DEFAULT 1,
            changes jsonb NOT NULL,
            personal_commitment text,
            personal text,
            prev_hash text NOT NULL,
            hash text NOT NULL,
            CONSTRAINT audit_chain_seq UNIQUE (chain, chain_seq),
            CONSTRAINT audit_chain_link UNIQUE (chain, prev_hash),
            CONSTRAINT audit_chain_seq_positive CHECK (chain_seq > 0)
        );
        CREATE INDEX audit_entries_account_seq ON audit_entries (account_id, seq DESC);
        CREATE INDEX audit_entries_account_object ON audit_entries (account_id, object_id, seq DESC);
        CREATE INDEX audit_entries_at ON audit_entries (at);

        CREATE TABLE audit_checkpoints (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            chain integer NOT NULL REFERENCES audit_chains (chain),
            chain_seq bigint NOT NULL,
            head_hash text NOT NULL,
            at timestamptz NOT NULL,
            public_key text NOT NULL,
            signature text NOT NULL
        );
        CREATE INDEX audit_checkpoints_chain ON audit_checkpoints (chain, chain_seq DESC);

        CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$;

        -- Only the sealed personal data may change (re-encryption, erasure): it is
        -- outside the hash, which covers a salted commitment of it instead.
        CREATE FUNCTION audit_entries_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF (to_jsonb(NEW) - 'personal') IS DISTINCT FROM (to_jsonb(OLD) - 'personal') THEN
                RAISE EXCEPTION 'audit entries cannot be changed (only their sealed personal data)'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;

        -- A head only moves forward, one entry's worth at a time or more; never back.
        CREATE FUNCTION audit_chains_guard_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.chain <> OLD.chain OR NEW.length <= OLD.length THEN
                RAISE EXCEPTION 'an audit chain head only moves forward'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            RETURN NEW;
        END $$;

        CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION audit_entries_guard_update();
        CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION audit_refuse();
        CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
            FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
        CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
            FOR EACH ROW EXECUTE FUNCTION audit_refuse();
        CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
            FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
        CREATE TRIGGER audit_chains_forward BEFORE UPDATE ON audit_chains
            FOR EACH ROW EXECUTE FUNCTION audit_chains_guard_update();
        CREATE TRIGGER audit_chains_no_delete BEFORE DELETE ON audit_chains
            FOR EACH ROW EXECUTE FUNCTION audit_refuse();
        CREATE TRIGGER audit_chains_no_truncate BEFORE TRUNCATE ON audit_chains
            FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();

        REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints FROM PUBLIC;
        REVOKE DELETE, TRUNCATE ON audit_chains FROM PUBLIC;

        ALTER TABLE api_keys DROP CONSTRAINT scopes_known;
        ALTER TABLE api_keys ADD CONSTRAINT scopes_known CHECK (
            scopes <@ ARRAY['payments:read', 'payments:write', 'refunds:write', 'reports:read', 'admin',
                            'audit:read']::text[]);
    """)


def downgrade() -> None:
    op.execute("""
        ALTER TABLE api_keys DROP CONSTRAINT scopes_known;
        ALTER TABLE api_keys ADD CONSTRAINT scopes_known CHECK (
            scopes <@ ARRAY['payments:read', 'payments:write', 'refunds:write', 'reports:read', 'admin']::text[]);
        DROP TABLE audit_checkpoints;
        DROP TABLE audit_entries;
        DROP TABLE audit_chains;
        DROP FUNCTION audit_refuse();
        DROP FUNCTION audit_entries_guard_update();
        DROP FUNCTION audit_chains_guard_update();
    """)
