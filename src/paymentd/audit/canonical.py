"""The one serialization the audit trail hashes and signs: sorted-key compact JSON
of plain values, times in UTC at microsecond precision (what PostgreSQL stores;
hashing finer precision made every entry fail verification elsewhere).

Standard library only: `scripts/verify_audit_export.py` carries a copy of
`canonical`/`entry_hash`, and tests/unit/test_audit_canonical.py keeps the two equal.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

GENESIS = "0" * 64  # the prev_hash of each chain's first entry
FORMAT = 1  # bumped if the hashed body ever changes shape

# The fields of an entry covered by its hash, in no particular order (keys are sorted).
HASHED = ("v", "id", "chain", "chain_seq", "prev_hash", "at", "account_id", "actor_type", "actor_id", "action",
          "object_type", "object_id", "request_id", "client_ip", "outcome", "count", "changes", "personal")


def timestamp(moment: datetime) -> str:
    """UTC, always six fractional digits, `Z`: one spelling per instant."""
    if moment.tzinfo is None:
        raise ValueError("audit times are timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(value: Any) -> Any:
    """A value as JSON-native data that survives a JSONB round trip unchanged."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, (Decimal, float)):
        return str(value)  # no floats in hashed data: their text is not stable across tools
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(item) for item in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    return str(value)


def canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(body: dict[str, Any]) -> str:
    """sha256 over the canonical body, which holds the previous entry's hash: the chain link."""
    return hashlib.sha256(canonical(body)).hexdigest()


def checkpoint_message(chain: int, chain_seq: int, head_hash: str, at: str) -> bytes:
    """What a signed checkpoint (or an export's signed head) signs."""
    return canonical({"v": FORMAT, "chain": chain, "chain_seq": chain_seq, "head_hash": head_hash, "at": at})
