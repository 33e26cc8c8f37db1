"""One field, sealed: AES-256-GCM from `cryptography`, the key's id in front.

`ev1:<key id>:<base64url(nonce | ciphertext | tag)>`. The key id lets a reader pick
the key without trying each; the associated data (table, column, row) makes a
ciphertext copied into another row or column fail to open instead of decrypting.
"""

from __future__ import annotations

import base64
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "ev1"
PREFIX = VERSION + ":"
NONCE_BYTES = 12  # GCM's own size; random per message (2^-32 collision bound is far off at our volumes)
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SEALED = re.compile(r"^ev1:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]+)$")


class SealError(Exception):
    """A sealed value that does not open: wrong row, altered, or a key not held."""


def associated_data(table: str, column: str, row_id: str) -> bytes:
    return f"paymentd/{table}.{column}/{row_id}".encode()


def seal(key_id: str, cipher: AESGCM, plaintext: bytes, aad: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    body = base64.urlsafe_b64encode(nonce + cipher.encrypt(nonce, plaintext, aad)).rstrip(b"=").decode()
    return f"{PREFIX}{key_id}:{body}"


def key_id_of(value: str) -> str | None:
    """The key a sealed value names; None for anything else (a plaintext from before)."""
    if not value.startswith(PREFIX):
        return None
    match = _SEALED.match(value)
    return match.group(1) if match else None


def open_sealed(value: str, cipher: AESGCM, aad: bytes) -> bytes:
    match = _SEALED.match(value)
    if match is None:
        raise SealError("not a sealed value")
    body = match.group(2)
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    try:
        return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError) as error:
        raise SealError("the value does not open under its key for this row and column") from error
