"""Encryption at rest: personal and merchant-sensitive fields sealed with AES-GCM
under rotatable data keys, themselves wrapped by a key-encryption key.

The API other code uses: `keyring().encrypt(value, table=, column=, row_id=)` and
`decrypt(...)` (also `_json`, `_bytes`), `keyring().blind_index(value, purpose=)`
for equality lookups; `fields.register()` to add a sealed column. `install(settings)`
once per process, before the database is used (app lifespan, worker, CLI).
"""

from __future__ import annotations

import threading

from paymentd.config import Settings
from paymentd.crypto.cipher import SealError
from paymentd.crypto.keyring import Keyring, KeysUnavailable, UnknownKey
from paymentd.crypto.keysource import KeyConfigError, key_source

__all__ = ["KeyConfigError", "Keyring", "KeysUnavailable", "SealError", "UnknownKey", "install", "key_source", "keyring"]

_current: Keyring | None = None
_installing = threading.Lock()


def install(settings: Settings, database_url: str | None = None) -> Keyring:
    """Build this process's keyring (refusing to run without a key in production) and
    load it; a second call for the same database and keys keeps the loaded one."""
    global _current
    from paymentd.jobs.queue import conninfo

    url = database_url or settings.database_url
    if not url:
        raise RuntimeError("the keyring needs the database (DATABASE_URL)")
    source = key_source(settings)
    with _installing:
        if _current is not None and _current.conninfo == conninfo(url) and _same_keys(_current, source):
            # One process, several apps (tests): the shortest refresh asked for wins.
            _current.refresh_s = min(_current.refresh_s, settings.encryption_refresh_s)
            return _current
        ring = Keyring(source, conninfo(url), refresh_s=settings.encryption_refresh_s)
        if ring.try_load() or _current is None:
            # One database per process; a second app on another database that cannot be
            # reached (a test of an outage) does not displace the keys already in use.
            _current = ring
        return ring


def _same_keys(ring: Keyring, source: object) -> bool:
    return getattr(ring.source, "spec", None) == getattr(source, "spec", None)


def keyring() -> Keyring:
    """This process's keyring."""
    if _current is None:
        raise RuntimeError("no keyring installed: call paymentd.crypto.install(settings) at start")
    return _current


from paymentd.crypto import orm  # noqa: E402,F401 - the ORM hooks, registered with the package
