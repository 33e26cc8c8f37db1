"""The sealing primitives and where keys come from, without a database."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymentd.config import Settings
from paymentd.crypto.cipher import SealError, associated_data, key_id_of, open_sealed, seal
from paymentd.crypto.keysource import KEY_FILE, KeyConfigError, StaticKeys, key_source

KEY = base64.b64encode(bytes(range(32))).decode()


def test_a_sealed_value_names_its_key_and_opens_only_for_its_row_and_column() -> None:
    cipher = AESGCM(bytes(32))
    aad = associated_data("users", "email", "row-1")
    sealed = seal("d1", cipher, b"ann@example.com", aad)
    assert key_id_of(sealed) == "d1" and "ann" not in sealed
    assert open_sealed(sealed, cipher, aad) == b"ann@example.com"
    assert seal("d1", cipher, b"ann@example.com", aad) != sealed  # a fresh nonce each time
    for wrong in (associated_data("users", "email", "row-2"), associated_data("users", "name", "row-1")):
        with pytest.raises(SealError):
            open_sealed(sealed, cipher, wrong)
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        open_sealed(flipped, cipher, aad)


def test_plaintext_is_not_mistaken_for_a_sealed_value() -> None:
    for plain in ("ann@example.com", "ev1:", "ev1:x", "ev1:bad id:abc", ""):
        assert key_id_of(plain) is None


def test_production_refuses_to_run_without_a_configured_key(tmp_path: Path) -> None:
    live = Settings(stripe_api_key="sk_live_x", encryption_keys=None, data_dir=tmp_path)
    with pytest.raises(KeyConfigError, match="PAYMENTD_ENCRYPTION_KEYS"):
        key_source(live)
    assert not (tmp_path / KEY_FILE).exists()
    configured = Settings(stripe_api_key="sk_live_x", encryption_keys=f"prod:{KEY}", data_dir=tmp_path)
    assert key_source(configured).primary_id == "prod"


def test_the_sandbox_makes_a_private_key_file_once(tmp_path: Path) -> None:
    sandbox = Settings(encryption_keys=None, data_dir=tmp_path / "data")
    first = key_source(sandbox)
    path = tmp_path / "data" / KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0
    assert key_source(sandbox).primary_id == first.primary_id  # the same key next time
    assert list(path.parent.iterdir()) == [path]  # no draft left behind


def test_kek_rotation_unwraps_under_an_older_key_and_wraps_under_the_first() -> None:
    old = StaticKeys(f"old:{KEY}")
    kek_id, wrapped = old.wrap("d1", b"k" * 32)
    both = StaticKeys(f"new:{base64.b64encode(os.urandom(32)).decode()},old:{KEY}")
    assert both.unwrap(kek_id, "d1", wrapped) == b"k" * 32
    assert both.wrap("d1", b"k" * 32)[0] == "new"
    with pytest.raises(KeyConfigError):
        both.unwrap(kek_id, "d2", wrapped)  # bound to its data key's id


@pytest.mark.parametrize("spec", ["", "nokey", f"bad id:{KEY}", "k:not base64!", f"k:{base64.b64encode(b'short').decode()}",
                                  f"k:{KEY},k:{KEY}"])
def test_malformed_key_configuration_is_refused_clearly(spec: str) -> None:
    with pytest.raises(KeyConfigError, match="PAYMENTD_ENCRYPTION_KEYS"):
        StaticKeys(spec)
