"""Sealing a unit of work's entries onto a hash chain, as the last thing before COMMIT.

The transaction takes one chain's head row (FOR UPDATE SKIP LOCKED from a random
start: writers spread over the chains instead of queueing on one), computes the
hashes in Python, and writes every entry and the new head in ONE statement. The
head stays locked only for that round trip and the COMMIT; a chain cannot fork,
and UNIQUE(chain, chain_seq) / UNIQUE(chain, prev_hash) say so again in the schema.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from paymentd.audit import personal
from paymentd.audit.canonical import FORMAT, entry_hash, timestamp
from paymentd.audit.entries import Pending

_FREE_HEAD = (
    "SELECT chain, length, head_hash FROM audit_chains ORDER BY chain >= $1 DESC, chain"
    " LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_ANY_HEAD = "SELECT chain, length, head_hash FROM audit_chains WHERE chain = $1 FOR UPDATE"
_CHAIN_COUNT = "SELECT count(*) FROM audit_chains"

_COLUMNS = ("id", "chain_seq", "at", "account_id", "actor_type", "actor_id", "action", "object_type", "object_id",
            "request_id", "client_ip", "outcome", "count", "changes", "personal_commitment", "personal",
            "prev_hash", "hash")
_TYPES = ("uuid", "int8", "timestamptz", "uuid", "text", "text", "text", "text", "text", "text", "text", "text",
          "int4", "text", "text", "text", "text", "text")
_WRITE = """
WITH head AS (UPDATE audit_chains SET length = $1, head_hash = $2, updated_at = clock_timestamp() WHERE chain = $3)
INSERT INTO audit_entries (chain, {columns})
SELECT $3, {selected} FROM unnest({arrays}) AS e({columns})
""".format(
    columns=", ".join(_COLUMNS),
    selected=", ".join("e.changes::jsonb" if c == "changes" else f"e.{c}" for c in _COLUMNS),
    arrays=", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=4)),
)

_chains = 16  # how many heads to pick from; learnt from the table on first use


def body(entry: Pending | dict[str, Any], chain: int, chain_seq: int, prev_hash: str, commitment: str | None,
         at: datetime) -> dict[str, Any]:
    """The hashed part of an entry (canonical.HASHED): what `verify` recomputes from columns."""
    get = entry.get if isinstance(entry, dict) else lambda name: getattr(entry, name)
    actor_type, actor_id = (entry["actor_type"], entry["actor_id"]) if isinstance(entry, dict) else (
        entry.actor.type, entry.actor.id)
    return {
        "v": FORMAT, "id": str(get("id")), "chain": chain, "chain_seq": chain_seq, "prev_hash": prev_hash,
        "at": timestamp(at), "account_id": _text(get("account_id")), "actor_type": actor_type, "actor_id": actor_id,
        "action": get("action"), "object_type": get("object_type"), "object_id": get("object_id"),
        "request_id": get("request_id"), "client_ip": get("client_ip"), "outcome": get("outcome"),
        "count": get("count"), "changes": get("changes"), "personal": commitment,
    }


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


async def seal(conn: asyncpg.Connection, entries: Sequence[Pending]) -> None:
    """Chain and write `entries` in the connection's open transaction."""
    if not entries:
        return
    global _chains
    # Personal data is sealed before the head is taken: no encryption under the lock.
    sealed = []
    for entry in entries:
        if entry.personal:
            blob, commitment = personal.commit(entry.personal)
            sealed.append((commitment, personal.seal(entry.id, blob)))
        else:
            sealed.append((None, None))
    head = await conn.fetchrow(_FREE_HEAD, random.randrange(_chains))
    if head is None:  # every head busy: queue on one at random
        _chains = await conn.fetchval(_CHAIN_COUNT) or _chains
        head = await conn.fetchrow(_ANY_HEAD, random.randrange(_chains))
    chain, length, prev = head["chain"], head["length"], head["head_hash"]
    rows: list[list[Any]] = [[] for _ in _COLUMNS]
    for entry, (commitment, blob) in zip(entries, sealed, strict=True):
        length += 1
        digest = entry_hash(body(entry, chain, length, prev, commitment, entry.at))
        values = (entry.id, length, entry.at, entry.account_id, entry.actor.type, entry.actor.id, entry.action,
                  entry.object_type, entry.object_id, entry.request_id, entry.client_ip, entry.outcome, entry.count,
                  json.dumps(entry.changes, separators=(",", ":"), ensure_ascii=False), commitment, blob, prev, digest)
        for column, value in zip(rows, values, strict=True):
            column.append(value)
        prev = digest
    await conn.execute(_WRITE, length, prev, chain, *rows)
