"""The keyring every process holds: the data keys, unwrapped, and the one to seal with.

Sealing and opening are in memory (microseconds, no round trip). The table is read at
start, again on a short timer (in the background, so no request waits), and at once
when a value names a key this process has not seen: a rotation made by another
process or the CLI is adopted without a restart and without a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterable
from typing import Any

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from paymentd.crypto import store
from paymentd.crypto.cipher import PREFIX, SealError, associated_data, key_id_of, open_sealed, seal
from paymentd.crypto.keysource import KeySource
from paymentd.logs import log

# An unknown key id re-reads the table at most this often: a flood of forged values
# must not turn into a flood of queries.
MISS_RELOAD_S = 1.0


class UnknownKey(SealError):
    """A value names a data key that is not in the table (or was retired)."""


class KeysUnavailable(ConnectionError):
    """The keys could not be read yet (the database is down): a retryable 503, like
    any request that needs the store, never a start-up failure."""


class Keyring:
    def __init__(self, source: KeySource, conninfo: str, *, refresh_s: float = 10.0) -> None:
        self.source = source
        self.conninfo = conninfo
        self.refresh_s = refresh_s
        self._ciphers: dict[str, AESGCM] = {}
        self._primary = ""
        self._index: tuple[str, bytes] = ("", b"")
        self._swap = threading.Lock()
        self._due = 0.0
        self._last_miss = 0.0
        self._refreshing: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Read the table (creating the first keys on an empty one), synchronously."""
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(store.LOAD).fetchall()
            if self._missing_primaries(rows):
                for purpose in self._missing_primaries(rows):
                    conn.execute(store.INSERT, store.new_key(self.source, purpose))
                rows = conn.execute(store.LOAD).fetchall()
        self._adopt(rows)

    def try_load(self) -> bool:
        """`load`, but a database that is down only leaves the keyring unloaded (the
        process starts and answers 503 until it is back); a key that does not unwrap
        still raises."""
        try:
            self.load()
            return True
        except psycopg.OperationalError as error:
            log.warning("crypto.keys_unavailable", error=str(error)[:200])
            return False

    def _load_or_unavailable(self) -> None:
        """`load` on a request's path: the database out of reach (or of connections) is
        the retryable 503 any store failure is, not a 500."""
        try:
            self.load()
        except psycopg.OperationalError as error:
            raise KeysUnavailable(f"the encryption keys could not be read: {str(error)[:200]}") from error

    async def refresh(self) -> None:
        """The same, without blocking the event loop (the timer's)."""
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            rows = await (await conn.execute(store.LOAD)).fetchall()
            if self._missing_primaries(rows):
                for purpose in self._missing_primaries(rows):
                    await conn.execute(store.INSERT, store.new_key(self.source, purpose))
                rows = await (await conn.execute(store.LOAD)).fetchall()
        self._adopt(rows)

    def _ready(self) -> None:
        if self._primary:
            return
        self._tick()  # not loaded (the database was down at start): try again, once a second
        if not self._primary:
            raise KeysUnavailable("the encryption keys are not loaded yet: the database is unavailable")

    @staticmethod
    def _missing_primaries(rows: Iterable[tuple]) -> list[str]:
        have = {row[1] for row in rows if row[2] == store.PRIMARY}
        return [purpose for purpose in (store.DATA, store.INDEX) if purpose not in have]

    def _adopt(self, rows: Iterable[tuple]) -> None:
        ciphers: dict[str, AESGCM] = {}
        primary, index = "", ("", b"")
        for dek_id, purpose, state, kek_id, wrapped in rows:
            key = self.source.unwrap(kek_id, dek_id, bytes(wrapped))
            if purpose == store.INDEX:
                if state == store.PRIMARY:
                    index = (dek_id, key)
                continue
            ciphers[dek_id] = AESGCM(key)
            if state == store.PRIMARY:
                primary = dek_id
        with self._swap:
            if primary != self._primary and self._primary:
                log.info("crypto.primary_key_changed", old=self._primary, new=primary)
            self._ciphers, self._primary, self._index = ciphers, primary, index
            self._due = time.monotonic() + self.refresh_s

    def _tick(self) -> None:
        """On the timer, refresh in the background (or inline with no event loop)."""
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + (self.refresh_s if self._primary else MISS_RELOAD_S)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._load_or_unavailable()
            return
        task = loop.create_task(self._refresh_logged())
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception as error:  # noqa: BLE001 - keep the keys we have; try again next tick
            log.warning("crypto.refresh_failed", error_type=type(error).__name__, error=str(error))

    def _cipher(self, key_id: str) -> AESGCM:
        self._ready()
        cipher = self._ciphers.get(key_id)
        if cipher is None and time.monotonic() - self._last_miss >= MISS_RELOAD_S:
            # Sealed by a process that rotated before our timer came round: read the
            # table now. Blocking, but once per rotation per process.
            self._last_miss = time.monotonic()
            self._load_or_unavailable()
            cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKey(f"no data key {key_id!r}")
        return cipher

    # ------------------------------------------------------------------ using

    @property
    def primary_id(self) -> str:
        return self._primary

    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, value: str | None, *, table: str, column: str, row_id: Any) -> str | None:
        """`value` sealed under the primary key for this row's column; None stays None."""
        if value is None:
            return None
        self._ready()
        self._tick()
        primary = self._primary
        return seal(primary, self._ciphers[primary], value.encode(), associated_data(table, column, str(row_id)))

    def decrypt(self, value: str | None, *, table: str, column: str, row_id: Any) -> str | None:
        """The plaintext; a value that is not sealed (a row from before encryption, not
        yet re-encrypted) is returned as it is."""
        if value is None or (key_id := key_id_of(value)) is None:
            return value
        return open_sealed(value, self._cipher(key_id), associated_data(table, column, str(row_id))).decode()

    def encrypt_json(self, value: Any, *, table: str, column: str, row_id: Any) -> str | None:
        if value is None:
            return None
        return self.encrypt(json.dumps(value, separators=(",", ":")), table=table, column=column, row_id=row_id)

    def decrypt_json(self, value: Any, *, table: str, column: str, row_id: Any) -> Any:
        """A JSON column holds a sealed string; anything else is a row from before."""
        if not isinstance(value, str) or key_id_of(value) is None:
            return value
        return json.loads(self.decrypt(value, table=table, column=column, row_id=row_id))  # type: ignore[arg-type]

    def encrypt_bytes(self, value: bytes | None, *, table: str, column: str, row_id: Any) -> bytes | None:
        if value is None:
            return None
        self._ready()
        self._tick()
        primary = self._primary
        return seal(primary, self._ciphers[primary], value, associated_data(table, column, str(row_id))).encode()

    def decrypt_bytes(self, value: bytes | None, *, table: str, column: str, row_id: Any) -> bytes | None:
        if value is None:
            return None
        value = bytes(value)
        if not value.startswith(PREFIX.encode()):
            return value  # a stored answer from before encryption
        text = value.decode("ascii", errors="replace")
        if (key_id := key_id_of(text)) is None:
            return value
        return open_sealed(text, self._cipher(key_id), associated_data(table, column, str(row_id)))

    def is_current(self, value: Any) -> bool:
        """A stored value sealed under the primary key (nothing to re-encrypt)."""
        if isinstance(value, dict):
            value = value.get("sealed")  # an inbox payload
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value[:64]).decode("ascii", errors="replace")
        return isinstance(value, str) and key_id_of(value) == self._primary

    def blind_index(self, value: str, *, purpose: str) -> str:
        """A keyed HMAC-SHA256 of `value` for equality lookups, never the plaintext.
        The index key's id is in front: a future index key can live beside this one."""
        self._ready()
        key_id, key = self._index
        digest = hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"{key_id}:{digest}"
