"""`paymentd audit verify`: every chain link, every chain's head row, every signed
checkpoint, and the commitment of each entry's sealed personal data. Stops at the
first entry that does not verify and names it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from paymentd.audit import personal, signing
from paymentd.audit.canonical import GENESIS, checkpoint_message, entry_hash, timestamp
from paymentd.audit.writer import body

_ENTRIES = "SELECT * FROM audit_entries ORDER BY chain, chain_seq"
_BATCH = 2_000


@dataclass
class Report:
    ok: bool = True
    problem: str | None = None
    chains: dict[int, int] = field(default_factory=dict)  # chain -> entries
    entries: int = 0
    checkpoints: int = 0

    def fail(self, problem: str) -> Report:
        self.ok, self.problem = False, problem
        return self

    def summary(self) -> str:
        if not self.ok:
            return f"audit trail does NOT verify: {self.problem}"
        return (f"audit trail verifies: {self.entries} entries in {len(self.chains)} chains, "
                f"{self.checkpoints} signed checkpoints")


def _name(row: Any) -> str:
    return f"entry seq={row['seq']} (chain {row['chain']} #{row['chain_seq']}, {row['action']})"


def stored_body(row: Any) -> dict[str, Any]:
    """The hashed body of a stored entry, rebuilt from its columns."""
    entry = dict(row)
    entry["changes"] = json.loads(row["changes"]) if isinstance(row["changes"], str) else row["changes"]
    return body(entry, row["chain"], row["chain_seq"], row["prev_hash"], row["personal_commitment"], row["at"])


def check_entry(row: Any, expected_seq: int, prev_hash: str) -> str | None:
    """Why this entry does not verify as the next one of its chain, or None."""
    if row["chain_seq"] != expected_seq:
        return (f"chain {row['chain']}: entry #{expected_seq} is missing "
                f"(the next one is {_name(row)})")
    if row["prev_hash"] != prev_hash:
        return f"{_name(row)}: does not link to the entry before it"
    if entry_hash(stored_body(row)) != row["hash"]:
        return f"{_name(row)}: its contents do not match its hash"
    if row["personal_commitment"] is not None:
        opened = personal.unseal(row["id"], row["personal"]) if row["personal"] else None
        if opened is None:
            return f"{_name(row)}: its personal data is missing"
        if not opened.get("erased") and personal.commitment(opened["salt"], opened["values"]) != \
                row["personal_commitment"]:
            return f"{_name(row)}: its personal data does not match its commitment"
    return None


async def verify(database: Any, public_key_hex: str | None) -> Report:
    report = Report()
    async with database.sql_transaction() as conn:  # one snapshot
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        heads = {r["chain"]: (r["length"], r["head_hash"]) for r in await conn.fetch(
            "SELECT chain, length, head_hash FROM audit_chains")}
        last: dict[int, tuple[int, str]] = {}
        chain, expected, prev = None, 1, GENESIS
        cursor = conn.cursor(_ENTRIES, prefetch=_BATCH)
        async for row in cursor:
            if row["chain"] != chain:
                chain, expected, prev = row["chain"], 1, GENESIS
            if (problem := check_entry(row, expected, prev)) is not None:
                return report.fail(problem)
            expected, prev = expected + 1, row["hash"]
            last[chain] = (row["chain_seq"], row["hash"])
            report.chains[chain] = report.chains.get(chain, 0) + 1
            report.entries += 1
        for number, (length, head_hash) in sorted(heads.items()):
            if last.get(number, (0, GENESIS)) != (length, head_hash):
                seen = last.get(number, (0, GENESIS))[0]
                return report.fail(f"chain {number}: its head says {length} entries ending in {head_hash[:12]}..., "
                                   f"the table holds {seen} that do not end there (entries removed or added)")
        for point in await conn.fetch("SELECT * FROM audit_checkpoints ORDER BY id"):
            where = f"checkpoint {point['id']} (chain {point['chain']} #{point['chain_seq']})"
            if public_key_hex is not None and point["public_key"] != public_key_hex:
                return report.fail(f"{where}: signed by another key ({point['public_key'][:16]}...)")
            message = checkpoint_message(point["chain"], point["chain_seq"], point["head_hash"], timestamp(point["at"]))
            if not signing.verifies(point["public_key"], message, point["signature"]):
                return report.fail(f"{where}: the signature does not verify")
            seen = last.get(point["chain"])
            entry_hash_at = await conn.fetchval(
                "SELECT hash FROM audit_entries WHERE chain = $1 AND chain_seq = $2", point["chain"], point["chain_seq"])
            if entry_hash_at is None or seen is None or seen[0] < point["chain_seq"]:
                return report.fail(f"{where}: the entry it signed no longer exists (the chain was cut back)")
            if entry_hash_at != point["head_hash"]:
                return report.fail(f"{where}: the entry it signed was replaced")
            report.checkpoints += 1
    return report
