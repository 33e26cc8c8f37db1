"""Failed access (401, 403) in the audit trail, aggregated: a flood of bad keys must
not flood the table. Each process counts failures per (client IP, key prefix,
account, status) and writes one `auth.failed` entry per group every few seconds,
with its `count`. At most one entry per group per interval reaches the database."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from paymentd.audit import context
from paymentd.audit.entries import record
from paymentd.auth.keys import prefix_of
from paymentd.logs import log

FLUSH_INTERVAL_S = 5.0
# Past this many distinct groups in one interval (an attack from many addresses),
# the rest are counted under one catch-all group rather than kept one by one.
MAX_GROUPS = 1_000
_OVERFLOW = ("*", None, None, 0)

_counts: Counter[tuple[str | None, str | None, str | None, int]] = Counter()
_lock = threading.Lock()  # test servers run on several threads of one process


def note(request: Any, status: int, key: str | None = None, account_id: object = None) -> None:
    """Count one refused request (called where 401/403 are raised)."""
    client = request.scope.get("client")
    group = (client[0] if client else None, prefix_of(key) if key else None,
             str(account_id) if account_id else None, status)
    with _lock:
        if group not in _counts and len(_counts) >= MAX_GROUPS:
            group = _OVERFLOW
        _counts[group] += 1


def _take() -> Counter:
    global _counts
    with _lock:
        taken, _counts = _counts, Counter()
    return taken


async def flush(database: Any) -> int:
    """Write what was counted since the last flush; returns how many entries."""
    taken = _take()
    if not taken:
        return 0
    try:
        async with database.sql_transaction() as conn:
            for (ip, prefix, account_id, status), count in taken.items():
                record(conn, "auth.failed", account_id=account_id, object_type="api_key", object_id=prefix,
                       actor=context.Actor("system", "auth"), outcome="unauthenticated" if status == 401
                       else "forbidden", count=count, client_ip=ip, request_id=None,
                       changes={"status": (None, status)})
    except Exception:
        with _lock:  # keep them for the next try
            _counts.update(taken)
        raise
    return len(taken)


async def run_flusher(database: Any, interval_s: float = FLUSH_INTERVAL_S) -> None:
    """The flushing loop of one process (the API's lifespan runs it); flushes once
    more when cancelled, so a clean shutdown loses nothing."""
    try:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await flush(database)
            except Exception as error:  # noqa: BLE001 - the next round tries again
                log.warning("audit.failures_not_written", error_type=type(error).__name__)
    finally:
        try:
            await asyncio.shield(flush(database))
        except Exception as error:  # noqa: BLE001
            log.warning("audit.failures_not_written", error_type=type(error).__name__)
