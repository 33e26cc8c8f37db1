#!/usr/bin/env python3
"""Check a `paymentd audit export` with only paymentd's public key.

    python scripts/verify_audit_export.py export.jsonl --public-key <64 hex digits>
    (or --public-key-file FILE, holding the output of `paymentd audit public-key`)

Needs the standard library and `cryptography`. Checks that every entry's hash
matches its contents, that each chain's entries link one to the next with no gap,
and that every signed head and checkpoint verifies under the given key and names
an exported entry with exactly that hash. Exit 0 when all holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = 1


# The same serialization as paymentd/audit/canonical.py (a unit test keeps them equal).
def canonical(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(body: dict) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def checkpoint_message(chain: int, chain_seq: int, head_hash: str, at: str) -> bytes:
    return canonical({"v": FORMAT, "chain": chain, "chain_seq": chain_seq, "head_hash": head_hash, "at": at})


def check(path: str, public_key_hex: str) -> list[str]:
    """Problems found; empty when the export verifies."""
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
    problems: list[str] = []
    hashes: dict[tuple[int, int], str] = {}
    last: dict[int, tuple[int, str]] = {}
    heads: set[tuple[int, int]] = set()
    with open(path, encoding="utf-8") as file:
        for number, text in enumerate(file, start=1):
            line = json.loads(text)
            kind = line.get("type")
            if kind == "entry":
                body = line["body"]
                chain, seq = body["chain"], body["chain_seq"]
                name = f"line {number} (chain {chain} #{seq}, {body.get('action')})"
                if entry_hash(body) != line["hash"]:
                    problems.append(f"{name}: its contents do not match its hash")
                if chain in last:
                    prev_seq, prev_hash = last[chain]
                    if seq != prev_seq + 1:
                        problems.append(f"{name}: entries #{prev_seq + 1}..#{seq - 1} are missing")
                    elif body["prev_hash"] != prev_hash:
                        problems.append(f"{name}: does not link to the entry before it")
                last[chain] = (seq, line["hash"])
                hashes[(chain, seq)] = line["hash"]
            elif kind in ("head", "checkpoint"):
                name = f"line {number} ({kind} of chain {line['chain']} #{line['chain_seq']})"
                message = checkpoint_message(line["chain"], line["chain_seq"], line["head_hash"], line["at"])
                try:
                    key.verify(bytes.fromhex(line["signature"]), message)
                except (InvalidSignature, ValueError):
                    problems.append(f"{name}: the signature does not verify with this public key")
                    continue
                if hashes.get((line["chain"], line["chain_seq"])) != line["head_hash"]:
                    problems.append(f"{name}: names an entry that is not in the export with that hash")
                if kind == "head":
                    heads.add((line["chain"], line["chain_seq"]))
            elif kind != "export":
                problems.append(f"line {number}: unknown line type {kind!r}")
    for chain, (seq, _) in sorted(last.items()):
        if (chain, seq) not in heads:
            problems.append(f"chain {chain}: no signed head covers its last entry #{seq}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--public-key", help="paymentd's Ed25519 public key, 64 hex digits")
    parser.add_argument("--public-key-file")
    args = parser.parse_args(argv)
    if bool(args.public_key) == bool(args.public_key_file):
        parser.error("give exactly one of --public-key and --public-key-file")
    public = args.public_key or open(args.public_key_file, encoding="utf-8").read().strip()
    problems = check(args.export, public)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"export does NOT verify ({len(problems)} problems)", file=sys.stderr)
        return 1
    print("export verifies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
