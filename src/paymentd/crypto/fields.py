"""Which columns are sealed, and how a row's fields are sealed and opened.

One list (`FIELDS`) names every encrypted column with its kind and the key columns
that identify its row: the ORM hooks (orm.py), the plain-SQL hot path
(payments/sql.py), the re-encryption job and `keys status` all read it. A new
personal-data column is one line here (`register`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from paymentd.crypto.keyring import Keyring

TEXT, JSON, BYTES, EVENT = "text", "json", "bytes", "event"
# In a stored event (webhooks inbox) only these references stay readable: Stripe ids
# the disputes lookup matches on (disputes/service.py), never personal data.
EVENT_REFS = ("id", "latest_charge")


@dataclass(frozen=True)
class Field:
    table: str
    column: str
    kind: str  # text | json (a JSONB value) | bytes | event (a webhook inbox payload)
    key: tuple[tuple[str, str], ...]  # (column, SQL type) of the row's primary key
    # False for rows no one may rewrite (an append-only, hash-chained audit trail): the
    # job leaves them, `keys status` counts them, and a key they use is never retired.
    rewritable: bool = True

    def row_id(self, get: Callable[[str], Any]) -> str:
        return "/".join(str(get(name)) for name, _ in self.key)

    def seal(self, ring: Keyring, value: Any, row_id: str) -> Any:
        """The stored form of a plaintext: a sealed string (bytes for BYTES)."""
        where = {"table": self.table, "column": self.column, "row_id": row_id}
        if self.kind == TEXT:
            return ring.encrypt(value, **where)
        if self.kind == JSON:
            return ring.encrypt_json(value, **where)
        if self.kind == BYTES:
            return ring.encrypt_bytes(value, **where)
        return seal_event(ring, value, row_id)

    def open(self, ring: Keyring, value: Any, row_id: str) -> Any:
        """The plaintext of a stored value (a value from before encryption passes as is)."""
        where = {"table": self.table, "column": self.column, "row_id": row_id}
        if self.kind == TEXT:
            return ring.decrypt(value, **where)
        if self.kind == JSON:
            return ring.decrypt_json(value, **where)
        if self.kind == BYTES:
            return ring.decrypt_bytes(value, **where)
        return open_event(ring, value, row_id)

    def sealed_text(self) -> str:
        """SQL: the sealed string in this column (for its key id), whatever the kind."""
        col = f'"{self.column}"'
        if self.kind == JSON:
            return f"(CASE WHEN jsonb_typeof({col}) = 'string' THEN {col} #>> '{{}}' END)"
        if self.kind == BYTES:
            return f"encode(substring({col} from 1 for 48), 'escape')"
        if self.kind == EVENT:
            return f"({col} ->> 'sealed')"
        return col


def seal_event(ring: Keyring, payload: Mapping[str, Any] | None, event_id: str) -> dict[str, Any] | None:
    """An inbox payload with its object (the part with names, emails, metadata) sealed;
    the envelope (type, time, ids) stays readable for queries and retention."""
    if payload is None:
        return None
    if "sealed" in payload:
        return dict(payload)
    body = payload.get("object")
    refs = {k: body[k] for k in EVENT_REFS if isinstance(body, Mapping) and isinstance(body.get(k), str)}
    sealed = ring.encrypt_json(body, table="webhook_events", column="payload", row_id=event_id)
    return {**{k: v for k, v in payload.items() if k != "object"}, "object": refs, "sealed": sealed}


def open_event(ring: Keyring, payload: Mapping[str, Any] | None, event_id: str) -> dict[str, Any] | None:
    if payload is None or "sealed" not in payload:
        return dict(payload) if payload is not None else None
    body = ring.decrypt_json(payload["sealed"], table="webhook_events", column="payload", row_id=event_id)
    return {**{k: v for k, v in payload.items() if k != "sealed"}, "object": body}


_UUID = (("id", "uuid"),)
FIELDS: list[Field] = [
    Field("users", "email", TEXT, _UUID),
    Field("users", "name", TEXT, _UUID),
    Field("payments", "description", TEXT, _UUID),
    Field("payments", "receipt_email", TEXT, _UUID),
    Field("payments", "metadata", JSON, _UUID),
    Field("receipt_emails", "recipient", TEXT, (("payment_id", "uuid"),)),
    Field("webhook_events", "payload", EVENT, (("id", "text"),)),
    # A stored answer replays a payment or user as it was sent: emails, metadata and all.
    Field("idempotency_keys", "response_body", BYTES, (("account_id", "uuid"), ("key", "text"))),
    # The audit trail's personal data: outside its hash chain, the one column it lets change.
    Field("audit_entries", "personal", TEXT, _UUID),
    # What a fraud decision's rules saw: the payer's email, IP and user agent among it.
    Field("fraud_decisions", "inputs", JSON, _UUID),
    # Outbound webhooks (outbound/): the signing secrets, free text, and what was sent
    # and answered (the object as GET shows it: emails, names, metadata).
    Field("webhook_endpoints", "secret", TEXT, _UUID),
    Field("webhook_endpoints", "previous_secret", TEXT, _UUID),
    Field("webhook_endpoints", "description", TEXT, _UUID),
    Field("outbound_events", "payload", JSON, (("id", "text"),)),
    Field("webhook_deliveries", "response_body", TEXT, _UUID),
]


def register(field: Field) -> None:
    """Another sealed column (the audit trail's personal data, for one)."""
    if all((f.table, f.column) != (field.table, field.column) for f in FIELDS):
        FIELDS.append(field)


def of_table(table: str) -> list[Field]:
    return [f for f in FIELDS if f.table == table]


def comparable(kind: str, value: Any) -> Any:
    """A plaintext in a form that tells whether it changed since it was loaded."""
    return json.dumps(value, sort_keys=True) if kind in (JSON, EVENT) else value
