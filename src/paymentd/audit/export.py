"""`paymentd audit export`: entries of a time range as JSON lines, with the signed
head of each chain's exported part and the stored checkpoints inside it, for an
auditor who holds only the public key (scripts/verify_audit_export.py).

Lines: one `export` header; `entry` lines ({"body": the hashed body, "hash"}), per
chain in chain order; `checkpoint` and `head` lines (signed chain heads). Each chain
is exported as one unbroken run (from its first to its last entry in the range), so
every link can be checked. Personal data stays out: only its commitment is there.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from paymentd.audit import signing
from paymentd.audit.canonical import FORMAT, timestamp
from paymentd.audit.checkpoints import signed_head
from paymentd.audit.verify import stored_body

_RUNS = """
SELECT chain, min(chain_seq) AS first, max(chain_seq) AS last FROM audit_entries
WHERE at >= $1 AND at < $2 GROUP BY chain ORDER BY chain
"""
_RUN = "SELECT * FROM audit_entries WHERE chain = $1 AND chain_seq BETWEEN $2 AND $3 ORDER BY chain_seq"
_CHECKPOINTS = ("SELECT * FROM audit_checkpoints WHERE chain = $1 AND chain_seq BETWEEN $2 AND $3"
                " ORDER BY chain_seq, id")


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"


async def export(database: Any, key: Ed25519PrivateKey, start: datetime, end: datetime, out: IO[str]) -> int:
    """Writes the export to `out`; returns how many entries."""
    count = 0
    now = datetime.now(UTC)
    out.write(_line({"type": "export", "format": FORMAT, "from": timestamp(start), "to": timestamp(end),
                     "exported_at": timestamp(now), "public_key": signing.public_hex(key)}))
    async with database.sql_transaction() as conn:
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for run in await conn.fetch(_RUNS, start, end):
            chain, last_hash = run["chain"], None
            async for row in conn.cursor(_RUN, chain, run["first"], run["last"], prefetch=1000):
                out.write(_line({"type": "entry", "body": stored_body(row), "hash": row["hash"]}))
                last_hash = row["hash"]
                count += 1
            for point in await conn.fetch(_CHECKPOINTS, chain, run["first"], run["last"]):
                out.write(_line({"type": "checkpoint", "chain": chain, "chain_seq": point["chain_seq"],
                                 "head_hash": point["head_hash"], "at": timestamp(point["at"]),
                                 "public_key": point["public_key"], "signature": point["signature"]}))
            out.write(_line({"type": "head", **signed_head(key, chain, run["last"], last_hash, now)}))
    return count

