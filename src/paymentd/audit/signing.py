"""The Ed25519 key that signs checkpoints and exports (`cryptography`).

From PAYMENTD_AUDIT_SIGNING_KEY / _FILE (via config.py). With none, sandbox mode
creates one in the data folder (mode 0600) and says so; production refuses to start
without one: a key made on the fly would sign nothing an auditor could trust.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from paymentd.logs import log

DEFAULT_FILE = "audit-signing-key.pem"


class SigningKeyMissing(RuntimeError):
    pass


def require_configured(settings) -> None:  # type: ignore[no-untyped-def]
    """Production (a real Stripe key) must bring its own signing key."""
    if not settings.sandbox and settings.audit_signing_key is None:
        raise SigningKeyMissing(
            "PAYMENTD_AUDIT_SIGNING_KEY (or _FILE) is required outside sandbox mode: it signs the audit "
            "trail's checkpoints. Make one with `paymentd audit new-key`.")


def load(settings) -> Ed25519PrivateKey:  # type: ignore[no-untyped-def]
    require_configured(settings)
    if settings.audit_signing_key is not None:
        return parse(settings.audit_signing_key.get_secret_value())
    return _default(Path(settings.data_dir) / DEFAULT_FILE)


def parse(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the audit signing key must be an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _default(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return parse(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return parse(path.read_text())
    with os.fdopen(fd, "w") as file:
        file.write(pem(key))
    log.warning("audit.signing_key_created", path=str(path),
                message="no PAYMENTD_AUDIT_SIGNING_KEY: created one for the sandbox; keep it, or checkpoints "
                        "signed with it can no longer be checked")
    return key


def public_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return key.sign(message).hex()


def verifies(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)).verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
