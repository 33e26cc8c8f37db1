"""Personal data in audit entries (emails, names, descriptions, metadata values):
kept out of the hashed part, sealed in the `personal` column, which alone may be
rewritten (key rotation, GDPR erasure) without breaking the chain. The hash covers
a salted commitment instead: sha256(salt || canonical(values)), the salt sealed too.

`seal`/`unseal` are the one seam to the encryption keyring.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from typing import Any

from paymentd.audit.canonical import canonical

# Field names whose values are personal wherever they appear in `changes`.
PERSONAL_FIELDS = frozenset({
    "email", "name", "receipt_email", "recipient", "description", "metadata", "billing_details", "phone",
    "address", "external_id",
})
ERASED = {"erased": True}


def split(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what may be hashed in clear, what is personal). A personal field that holds no
    value before or after ([null, null], e.g. a payment created without a description)
    carries nothing personal: it stays in clear, and an entry with nothing else
    personal needs no commitment and no sealing at all."""
    clear: dict[str, Any] = {}
    private: dict[str, Any] = {}
    for key, value in changes.items():
        if key in PERSONAL_FIELDS and any(item is not None for item in value):
            private[key] = value
        else:
            clear[key] = value
    return clear, private


def commitment(salt: str, values: dict[str, Any]) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + canonical(values)).hexdigest()


def commit(values: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The blob to seal (salt and values) and the commitment the hash covers."""
    salt = secrets.token_hex(16)
    return {"salt": salt, "values": values}, commitment(salt, values)


def seal(entry_key: uuid.UUID, values: dict[str, Any]) -> str:
    """Encrypt `values` for the entry `entry_key` (bound as associated data) with the keyring."""
    from paymentd import crypto

    return crypto.keyring().encrypt(json.dumps(values, separators=(",", ":")), **_where(entry_key))  # type: ignore[return-value]


def unseal(entry_key: uuid.UUID, sealed: str) -> dict[str, Any]:
    from paymentd import crypto

    return json.loads(crypto.keyring().decrypt(sealed, **_where(entry_key)))  # type: ignore[arg-type]


def _where(entry_key: uuid.UUID) -> dict[str, Any]:
    return {"table": "audit_entries", "column": "personal", "row_id": entry_key}


def opened(entry_key: uuid.UUID, sealed: str | None) -> dict[str, Any] | None:
    """The personal changes of an entry; None when it has none or they were erased."""
    if sealed is None:
        return None
    blob = unseal(entry_key, sealed)
    return None if blob.get("erased") else blob.get("values")
