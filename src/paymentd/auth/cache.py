"""Authenticating API keys without a database round trip on every request.

A key checked against the database is trusted for `ttl_s` (PAYMENTD_AUTH_CACHE_S,
default 1 s) in this process, so revocation takes effect within that long everywhere.
Expiry needs no wait: a cached key's expiry is checked on every use. Refused keys
(unknown, revoked, expired) are never cached: each such attempt is checked afresh.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from paymentd.auth import keys
from paymentd.auth import service as auth_service
from paymentd.auth.service import Principal, Refusal
from paymentd.auth.usage import KeyUsage
from paymentd.db import Database


class Authenticator:
    def __init__(
        self, database: Database, *, ttl_s: float = 1.0, max_entries: int = 10_000, usage: KeyUsage | None = None
    ) -> None:
        self.database = database
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.usage = usage
        self._trusted: dict[str, tuple[float, Principal]] = {}

    async def __call__(self, key: str) -> Principal | None:
        checked = await self.check(key)
        return checked if isinstance(checked, Principal) else None

    async def check(self, key: str) -> Principal | Refusal:
        digest = keys.hash_key(key)
        now = time.monotonic()
        hit = self._trusted.get(digest)
        if hit is not None and hit[0] > now:
            checked: Principal | Refusal = hit[1]
        else:
            async with self.database.transaction() as session:
                checked = await auth_service.authenticate(session, key)
            if isinstance(checked, Principal) and self.ttl_s > 0:
                if len(self._trusted) >= self.max_entries:
                    self._trusted.clear()  # bounded: a rare full re-check beats unbounded growth
                self._trusted[digest] = (now + self.ttl_s, checked)
        if isinstance(checked, Principal):
            if checked.expires_at is not None and checked.expired(datetime.now(UTC)):
                self._trusted.pop(digest, None)
                return Refusal("expired", key_prefix=checked.key_prefix, account_id=checked.account_id,
                               api_key_id=checked.api_key_id)
            if self.usage is not None:
                self.usage.touch(checked.api_key_id)
        return checked
