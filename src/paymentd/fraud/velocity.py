"""Velocity counters: attempts, declines, successes and amounts per user, email, client
IP and card, in one-minute buckets, plus each key's declines in a row.

Exact under concurrency without a lock of our own: an attempt's `INSERT ... ON CONFLICT
DO UPDATE` takes its bucket row's lock until the deciding transaction commits, so
attempts on one key are counted one after the other, across processes, and each
decision sees every attempt before it. Reads are index range scans of one key's
buckets (at most 1440 a day): no table scan per payment. Old buckets go hourly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from paymentd.fraud.inputs import WINDOWS

KEEP = timedelta(minutes=max(WINDOWS.values()) + 60)

_COUNT_ATTEMPT = """
INSERT INTO fraud_counters AS c (account_id, kind, key, bucket, currency, attempts, amount)
SELECT $1, k.kind, k.key, $4, $5, 1, $6 FROM unnest($2::text[], $3::text[]) AS k(kind, key) ORDER BY 2, 3
ON CONFLICT (account_id, kind, key, bucket, currency)
DO UPDATE SET attempts = c.attempts + 1, amount = c.amount + EXCLUDED.amount
"""

_WINDOW_SUMS = ", ".join(
    f"sum({metric}) FILTER (WHERE bucket > $4::timestamptz - interval '{minutes} minutes'{' AND currency = $5' if metric == 'amount' else ''})"
    f" AS {metric}_{name}"
    for name, minutes in WINDOWS.items() for metric in ("attempts", "declines", "successes", "amount")
)
# LATERAL: one index range scan of (account, kind, key, bucket) per key, never the account's other keys.
_READ = f"""
SELECT k.kind, w.*
FROM unnest($2::text[], $3::text[]) AS k(kind, key)
CROSS JOIN LATERAL (
    SELECT {_WINDOW_SUMS} FROM fraud_counters c
    WHERE c.account_id = $1 AND c.kind = k.kind AND c.key = k.key
      AND c.bucket > $4::timestamptz - interval '{max(WINDOWS.values())} minutes'
) AS w
"""
_STREAKS = """
SELECT s.kind, s.declines_in_row
FROM unnest($2::text[], $3::text[]) AS k(kind, key)
JOIN LATERAL (SELECT kind, declines_in_row FROM fraud_streaks
              WHERE account_id = $1 AND kind = k.kind AND key = k.key) AS s ON true
"""
_COUNT_OUTCOME = """
INSERT INTO fraud_counters AS c (account_id, kind, key, bucket, currency, declines, successes)
SELECT $1, k.kind, k.key, $4, $5, $6, $7 FROM unnest($2::text[], $3::text[]) AS k(kind, key) ORDER BY 2, 3
ON CONFLICT (account_id, kind, key, bucket, currency)
DO UPDATE SET declines = c.declines + EXCLUDED.declines, successes = c.successes + EXCLUDED.successes
"""
_STREAK = """
INSERT INTO fraud_streaks AS s (account_id, kind, key, declines_in_row, updated_at)
SELECT $1, k.kind, k.key, $4, $5 FROM unnest($2::text[], $3::text[]) AS k(kind, key) ORDER BY 2, 3
ON CONFLICT (account_id, kind, key)
DO UPDATE SET declines_in_row = CASE WHEN $4 = 0 THEN 0 ELSE s.declines_in_row + 1 END, updated_at = $5
"""


def bucket(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def _columns(keys: Mapping[str, str]) -> tuple[list[str], list[str]]:
    ordered = sorted(keys.items())  # one lock order for every transaction: no deadlocks
    return [kind for kind, _ in ordered], [key for _, key in ordered]


async def count_attempt(conn: asyncpg.Connection, account_id: uuid.UUID, keys: Mapping[str, str], *,
                        currency: str, amount: int, now: datetime) -> dict[str, Any]:
    """Count one attempt for each key and read every window, this attempt included.
    Run inside the transaction that decides on the attempt (see the module docstring)."""
    if not keys:
        return {}
    kinds, values = _columns(keys)
    await conn.execute(_COUNT_ATTEMPT, account_id, kinds, values, bucket(now), currency, amount)
    return await read(conn, account_id, keys, currency=currency, now=now)


async def read(conn: asyncpg.Connection, account_id: uuid.UUID, keys: Mapping[str, str], *,
               currency: str, now: datetime) -> dict[str, Any]:
    """The velocity inputs of these keys (inputs.py names), without counting anything."""
    kinds, values = _columns(keys)
    found: dict[str, Any] = {}
    for row in await conn.fetch(_READ, account_id, kinds, values, bucket(now), currency):
        for column, value in row.items():
            if column != "kind":
                found[f"{row['kind']}_{column}"] = Decimal(value or 0)
    for row in await conn.fetch(_STREAKS, account_id, kinds, values):
        found[f"{row['kind']}_declines_in_row"] = Decimal(row["declines_in_row"])
    return found


async def count_outcome(conn: asyncpg.Connection, account_id: uuid.UUID, keys: Mapping[str, str], *,
                        currency: str, declined: bool, now: datetime) -> None:
    """An attempt's end: a decline (streaks grow) or a success (streaks reset)."""
    if not keys:
        return
    kinds, values = _columns(keys)
    await conn.execute(_COUNT_OUTCOME, account_id, kinds, values, bucket(now), currency,
                       int(declined), int(not declined))
    await conn.execute(_STREAK, account_id, kinds, values, int(declined), now)


async def forget_old(conn: asyncpg.Connection, now: datetime) -> int:
    """Buckets no window reaches any more (the hourly cleanup)."""
    status = await conn.execute("DELETE FROM fraud_counters WHERE bucket < $1", now - KEEP)
    return int(status.split()[-1])
