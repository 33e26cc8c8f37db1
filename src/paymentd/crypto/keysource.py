"""Where the key-encryption keys (KEKs) come from: the seam a KMS can replace.

A `KeySource` wraps and unwraps data keys; the data keys themselves live in the
database (store.py), so a KEK never touches a row. Today's source is static keys
from PAYMENTD_ENCRYPTION_KEYS(_FILE), or, in sandbox mode only, a key file the
embedded default creates in the data folder.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymentd.config import Settings
from paymentd.crypto.cipher import KEY_ID
from paymentd.logs import log

KEY_FILE = "encryption.keys"


class KeyConfigError(RuntimeError):
    """The encryption keys are missing (production) or malformed."""


class KeySource(Protocol):
    """Wraps data keys under a KEK. `wrap` uses the primary; `unwrap` any it holds."""

    @property
    def primary_id(self) -> str: ...

    def holds(self, kek_id: str) -> bool: ...

    def wrap(self, dek_id: str, dek: bytes) -> tuple[str, bytes]: ...

    def unwrap(self, kek_id: str, dek_id: str, wrapped: bytes) -> bytes: ...


class StaticKeys:
    """KEKs given as configuration, "id:base64,id:base64": the first is the primary;
    the others still unwrap (a KEK rotation: add the new one first, `keys rewrap`,
    then drop the old one)."""

    def __init__(self, spec: str) -> None:
        self._keys: dict[str, AESGCM] = {}
        order: list[str] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, sep, encoded = item.partition(":")
            if not sep or not KEY_ID.match(key_id):
                raise KeyConfigError("PAYMENTD_ENCRYPTION_KEYS: each key is `id:base64` (id: letters, digits, _ -)")
            try:
                raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
            except ValueError as error:
                raise KeyConfigError(f"PAYMENTD_ENCRYPTION_KEYS: key {key_id!r} is not base64") from error
            if len(raw) != 32:
                raise KeyConfigError(f"PAYMENTD_ENCRYPTION_KEYS: key {key_id!r} must be 32 bytes (AES-256)")
            if key_id in self._keys:
                raise KeyConfigError(f"PAYMENTD_ENCRYPTION_KEYS: key id {key_id!r} appears twice")
            self._keys[key_id] = AESGCM(raw)
            order.append(key_id)
        if not order:
            raise KeyConfigError("PAYMENTD_ENCRYPTION_KEYS holds no key")
        self._primary = order[0]
        self.spec = spec  # compared, never logged (install() keeps a keyring for the same keys)

    @property
    def primary_id(self) -> str:
        return self._primary

    def holds(self, kek_id: str) -> bool:
        return kek_id in self._keys

    def wrap(self, dek_id: str, dek: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(12)
        return self._primary, nonce + self._keys[self._primary].encrypt(nonce, dek, _aad(dek_id))

    def unwrap(self, kek_id: str, dek_id: str, wrapped: bytes) -> bytes:
        if kek_id not in self._keys:
            raise KeyConfigError(f"data key {dek_id} is wrapped by KEK {kek_id!r}, which is not configured")
        try:
            return self._keys[kek_id].decrypt(wrapped[:12], wrapped[12:], _aad(dek_id))
        except InvalidTag as error:
            raise KeyConfigError(f"data key {dek_id} does not unwrap under KEK {kek_id!r}") from error


def _aad(dek_id: str) -> bytes:
    return f"paymentd/data_keys/{dek_id}".encode()


def new_key_spec() -> str:
    """A fresh KEK in the configuration's format."""
    return f"k{secrets.token_hex(4)}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}"


def key_source(settings: Settings) -> KeySource:
    """The configured KEKs; else, in sandbox mode, the data folder's key file (created
    0600 on first use). Production (a real Stripe key) refuses to run without one."""
    if settings.encryption_keys is not None:
        return StaticKeys(settings.encryption_keys.get_secret_value())
    if not settings.sandbox:
        raise KeyConfigError(
            "STRIPE_API_KEY is set but no encryption key is: set PAYMENTD_ENCRYPTION_KEYS (or _FILE) "
            "to `id:base64(32 random bytes)`; paymentd will not store personal data under a key it made up"
        )
    return StaticKeys(_embedded_key(settings.data_dir))


def _embedded_key(data_dir: Path) -> str:
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return path.read_text().strip()
    # Written whole under a private name, then linked into place: a process starting
    # beside us reads either no file or a complete one, and only one key ever wins.
    spec = new_key_spec()
    draft = data_dir / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(spec + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        draft.unlink()
    log.warning("ENCRYPTION KEY CREATED: no PAYMENTD_ENCRYPTION_KEYS set; personal data is encrypted under a new "
                "key in this file. Back it up: without it the data cannot be read.", path=str(path.resolve()))
    return spec
