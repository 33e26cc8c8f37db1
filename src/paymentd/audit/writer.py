"""Sealing a unit of work's entries onto a hash chain, as the last thing before COMMIT.

Usually ONE round trip: the process remembers the heads of chains it wrote last
(`Heads`), hashes the entries onto one in Python, and writes entries and new head
in one statement whose UPDATE of the head only matches if the row still holds the
remembered (length, head_hash). The row lock that UPDATE takes, and PostgreSQL's
re-check of the WHERE after waiting for a concurrent writer, mean that a head moved
by anyone else (another process, a rolled-back or unknown outcome) matches no row,
inserts nothing, and the seal falls back to the locking path: one chain's head row
FOR UPDATE SKIP LOCKED from a random start (writers spread over the chains instead
of queueing on one), then the same write onto the head it now holds. Either way the
head is locked from the write to COMMIT, so a chain cannot fork whatever the cache holds;
UNIQUE(chain, chain_seq) says so again in the schema. A remembered head is lent to
one transaction at a time, and given back only once that transaction committed.
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
WITH head AS (UPDATE audit_chains SET length = $1, head_hash = $2, updated_at = clock_timestamp()
              WHERE chain = $3 AND length = $4 AND head_hash = $5 RETURNING chain)
INSERT INTO audit_entries (chain, {columns})
SELECT head.chain, {selected} FROM head, unnest({arrays}) AS e({columns})
""".format(
    columns=", ".join(_COLUMNS),
    selected=", ".join("e.changes::jsonb" if c == "changes" else f"e.{c}" for c in _COLUMNS),
    arrays=", ".join(f"${i}::{t}[]" for i, t in enumerate(_TYPES, start=6)),
)

_chains = 16  # how many heads to pick from; learnt from the table on first use

Head = tuple[int, int, str]  # (chain, length, head_hash)


class Heads:
    """One Database's remembered chain heads in this process, each lent to at most one
    transaction at a time (dict operations are atomic under the GIL: a server thread
    and a test's loop may share nothing else). Most recently given back is lent first,
    so a process at low concurrency keeps writing the same few chains and processes
    rarely meet on one."""

    def __init__(self) -> None:
        self._idle: dict[int, tuple[int, str]] = {}

    def borrow(self) -> Head | None:
        try:
            chain, (length, head_hash) = self._idle.popitem()
        except KeyError:
            return None
        return chain, length, head_hash

    def give_back(self, head: Head) -> None:
        """After COMMIT only: then the head is what this transaction left."""
        chain, length, head_hash = head
        self._idle[chain] = (length, head_hash)


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


async def seal(conn: asyncpg.Connection, entries: Sequence[Pending], heads: Heads | None = None) -> Head | None:
    """Chain and write `entries` in the connection's open transaction; returns the head
    it left, for `heads.give_back` once the transaction has committed."""
    if not entries:
        return None
    # Personal data is sealed before the head is taken: no encryption under the lock.
    sealed = [_personal(entry) for entry in entries]
    remembered = heads.borrow() if heads is not None else None
    if remembered is not None:
        rows, head = _link(entries, sealed, *remembered)
        status = await conn.execute(_WRITE, head[1], head[2], head[0], remembered[1], remembered[2], *rows)
        if status == f"INSERT 0 {len(entries)}":
            return head
        # The head moved since: forget it (not given back) and take a free one.
    chain, length, prev = await _lock_free_head(conn)
    rows, head = _link(entries, sealed, chain, length, prev)
    status = await conn.execute(_WRITE, head[1], head[2], head[0], length, prev, *rows)
    if status != f"INSERT 0 {len(entries)}":  # the head is locked: only a broken guard gets here
        raise RuntimeError(f"audit chain {chain}: its locked head moved ({status})")
    return head


def _personal(entry: Pending) -> tuple[str | None, str | None]:
    """(commitment, sealed blob) of an entry's personal values; none when it has none."""
    if not entry.personal:
        return None, None
    blob, commitment = personal.commit(entry.personal)
    return commitment, personal.seal(entry.id, blob)


async def _lock_free_head(conn: asyncpg.Connection) -> Head:
    global _chains
    head = await conn.fetchrow(_FREE_HEAD, random.randrange(_chains))
    if head is None:  # every head busy: queue on one at random
        _chains = await conn.fetchval(_CHAIN_COUNT) or _chains
        head = await conn.fetchrow(_ANY_HEAD, random.randrange(_chains))
    return head["chain"], head["length"], head["head_hash"]


def _link(entries: Sequence[Pending], sealed: list[tuple[str | None, str | None]], chain: int, length: int,
          prev: str) -> tuple[list[list[Any]], Head]:
    """The entries hashed onto (chain, length, prev) as column arrays, and the head they leave."""
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
    return rows, (chain, length, prev)
