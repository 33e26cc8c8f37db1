"""When each API key was last used, without a database write per request.

Every authenticated request only notes the time in memory; a background task writes
what was noted at most once per interval (default a minute) per key and process, in
one statement for all keys. `last_used_at` is therefore up to an interval stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

from paymentd.db import Database
from paymentd.logs import log

_WRITE = (
    "UPDATE api_keys SET last_used_at = GREATEST(COALESCE(api_keys.last_used_at, '-infinity'), u.at) "
    "FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, at) WHERE api_keys.id = u.id"
)


class KeyUsage:
    def __init__(self, database: Database, *, interval_s: float = 60.0) -> None:
        self.database = database
        self.interval_s = interval_s
        self._seen: dict[uuid.UUID, float] = {}
        self._task: asyncio.Task[None] | None = None

    def touch(self, key_id: uuid.UUID) -> None:
        """On the hot path: a dict assignment, nothing else."""
        self._seen[key_id] = time.time()

    @property
    def pending(self) -> int:
        return len(self._seen)

    async def flush(self) -> int:
        """Write what was noted since the last flush; returns how many keys were written."""
        if not self._seen:
            return 0
        seen, self._seen = self._seen, {}
        ids = list(seen)
        at = [datetime.fromtimestamp(seen[i], UTC) for i in ids]
        try:
            async with self.database.sql_connection() as conn:
                await conn.execute(_WRITE, ids, at)
        except BaseException:
            # Not lost: noted again for the next flush (a later use wins).
            for key_id, when in seen.items():
                self._seen[key_id] = max(when, self._seen.get(key_id, when))
            raise
        return len(ids)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="paymentd-key-usage")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()  # the last minute's uses are not dropped at shutdown

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception:  # noqa: BLE001 - the database may be away; the next round retries
                log.warning("api_key_usage.flush_failed", exc_info=True)
