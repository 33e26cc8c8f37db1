"""The data keys (DEKs) table: each DEK wrapped by a KEK, one primary per purpose.

`data` keys seal fields and rotate (`paymentd keys rotate`); the `index` key makes
blind indexes and never rotates with them (re-indexing is a different job), though a
KEK rotation rewraps it like the others. Retiring a key drops its material.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymentd.crypto.keysource import KeySource

DATA, INDEX = "data", "index"
PRIMARY, ACTIVE, RETIRED = "primary", "active", "retired"

LOAD = "SELECT id, purpose, state, kek_id, wrapped FROM data_keys WHERE state <> 'retired'"
# The partial unique index (one primary per purpose) settles a race between processes
# starting on an empty table: one insert wins, the others re-read it.
INSERT = (
    "INSERT INTO data_keys (id, purpose, state, kek_id, wrapped) VALUES (%s, %s, 'primary', %s, %s)"
    " ON CONFLICT DO NOTHING"
)
DEMOTE = "UPDATE data_keys SET state = 'active', demoted_at = clock_timestamp() WHERE purpose = %s AND state = 'primary'"
LIST = "SELECT id, purpose, state, kek_id, created_at, demoted_at, retired_at FROM data_keys ORDER BY created_at, id"


@dataclass(frozen=True)
class KeyRow:
    id: str
    purpose: str
    state: str
    kek_id: str
    created_at: datetime
    demoted_at: datetime | None
    retired_at: datetime | None


def new_key(source: KeySource, purpose: str) -> tuple[str, str, str, bytes]:
    """A fresh DEK as the INSERT's parameters: (id, purpose, KEK id, wrapped key)."""
    dek_id = ("d" if purpose == DATA else "i") + secrets.token_hex(4)
    kek_id, wrapped = source.wrap(dek_id, AESGCM.generate_key(bit_length=256))
    return dek_id, purpose, kek_id, wrapped
