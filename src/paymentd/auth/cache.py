"""Authenticating API keys without a database round trip on every request.

A key checked against the database is trusted for `ttl_s` (default 1 s) in this
process, so revocation takes effect within that long everywhere. Unknown or
revoked keys are never cached: each such attempt is checked afresh.
"""

from __future__ import annotations

import time

from paymentd.auth import keys
from paymentd.auth import service as auth_service
from paymentd.auth.service import Principal
from paymentd.db import Database


class Authenticator:
    def __init__(self, database: Database, *, ttl_s: float = 1.0, max_entries: int = 10_000) -> None:
        self.database = database
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._trusted: dict[str, tuple[float, Principal]] = {}

    async def __call__(self, key: str) -> Principal | None:
        digest = keys.hash_key(key)
        now = time.monotonic()
        hit = self._trusted.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.database.transaction() as session:
            principal = await auth_service.authenticate(session, key)
        if principal is not None and self.ttl_s > 0:
            if len(self._trusted) >= self.max_entries:
                self._trusted.clear()  # bounded: a rare full re-check beats unbounded growth
            self._trusted[digest] = (now + self.ttl_s, principal)
        return principal
