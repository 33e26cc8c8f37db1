"""Leaner audit_entries: two indexes fewer to maintain on every audited change.

`UNIQUE (chain, prev_hash)` goes. It only ever rejects a second entry naming the
same predecessor in a chain, and `UNIQUE (chain, chain_seq)` already does: every
writer (audit/writer.py) writes chain_seq = head.length + 1 and prev_hash =
head.head_hash from the same head row, under that row's lock (the conditional
UPDATE or FOR UPDATE), and the head row only ever pairs a length with the hash of
the entry at that length (its trigger lets it move forward only). So two entries
with one prev_hash in a chain would carry one chain_seq, which the remaining
constraint refuses. An entry written around the writer (by a superuser) with a
prev_hash that does not fit its chain_seq is what `paymentd audit verify` reports:
every link is checked against the entry before it. What the dropped constraint
cost: a 64-character text B-tree insert per entry (the widest of the six indexes),
on the hottest table's every write.

The B-tree on `at` becomes a BRIN index: entries are appended in time order (their
`at` is taken just before sealing), so block ranges summarise it well; `audit
export --from --to` (the one query on `at` without an account) still skips the
ranges outside its period, and an append costs next to nothing instead of a B-tree
insert. API filters on time are served by the account indexes with `at` as a filter.

Revision ID: 0012_audit_lean
Revises: 0011_fraud_reviews
"""

from alembic import op

revision = "0012_audit_lean"
down_revision = "0011_fraud_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        ALTER TABLE audit_entries DROP CONSTRAINT audit_chain_link;
        DROP INDEX audit_entries_at;
        CREATE INDEX audit_entries_at_brin ON audit_entries USING brin (at);
    """)


def downgrade() -> None:
    op.execute("""
        DROP INDEX audit_entries_at_brin;
        CREATE INDEX audit_entries_at ON audit_entries (at);
        ALTER TABLE audit_entries ADD CONSTRAINT audit_chain_link UNIQUE (chain, prev_hash);
    """)
