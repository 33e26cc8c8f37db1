"""API-key format and hashing.

A key reads `pd_<prefix>_<secret>`: the prefix finds the row, the SHA-256 of the
whole key is compared in constant time. Keys carry 256 bits of randomness, so a
fast hash is enough (nothing to brute-force, unlike passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    payments_read = "payments:read"
    payments_write = "payments:write"
    refunds_write = "refunds:write"
    reports_read = "reports:read"
    audit_read = "audit:read"
    dashboard = "dashboard"  # sign in to /dashboard (dashboard/)
    admin = "admin"


_KEY_RE = re.compile(r"^pd_([a-z0-9]{12})_([A-Za-z0-9]{43})$")
_PREFIX_RE = re.compile(r"^[a-z0-9]{12}$")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class NewKey:
    prefix: str
    secret: str  # the whole key, shown once
    secret_hash: str


def generate() -> NewKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(12))
    body = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(43))
    key = f"pd_{prefix}_{body}"
    return NewKey(prefix=prefix, secret=key, secret_hash=hash_key(key))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, None for anything else."""
    match = _KEY_RE.match(key)
    return match.group(1) if match else None


def is_prefix(text: str) -> bool:
    return _PREFIX_RE.match(text) is not None


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
