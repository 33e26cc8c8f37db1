"""Signed checkpoints: now and then each chain's head (chain, chain_seq, head hash,
time) is signed with the Ed25519 key and stored. A later rewrite of the chain, even
one that fixes up the head row too, no longer matches what was signed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paymentd.audit import signing
from paymentd.audit.canonical import checkpoint_message, timestamp

_HEADS = """
SELECT c.chain, c.length, c.head_hash FROM audit_chains c
WHERE c.length > 0 AND c.length > COALESCE(
    (SELECT max(k.chain_seq) FROM audit_checkpoints k WHERE k.chain = c.chain), 0)
ORDER BY c.chain
"""
_INSERT = ("INSERT INTO audit_checkpoints (chain, chain_seq, head_hash, at, public_key, signature)"
           " VALUES ($1, $2, $3, $4, $5, $6)")


def signed_head(key: Ed25519PrivateKey, chain: int, chain_seq: int, head_hash: str, at: datetime) -> dict[str, Any]:
    signature = signing.sign(key, checkpoint_message(chain, chain_seq, head_hash, timestamp(at)))
    return {"chain": chain, "chain_seq": chain_seq, "head_hash": head_hash, "at": timestamp(at),
            "public_key": signing.public_hex(key), "signature": signature}


async def write(database: Any, key: Ed25519PrivateKey) -> int:
    """A checkpoint for every chain that grew since its last one; returns how many."""
    at = datetime.now(UTC)
    async with database.sql_transaction() as conn:
        heads = await conn.fetch(_HEADS)
        for head in heads:
            signed = signed_head(key, head["chain"], head["length"], head["head_hash"], at)
            await conn.execute(_INSERT, head["chain"], head["length"], head["head_hash"], at,
                               signed["public_key"], signed["signature"])
    return len(heads)
