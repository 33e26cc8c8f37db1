"""Housekeeping: Idempotency-Keys are promised for at least `idempotency_ttl_hours`
(API.md: 24 h), and forgotten after, so the table does not grow forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from paymentd.db import Database


async def delete_expired_idempotency_keys(database: Database, ttl_hours: int, *, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=ttl_hours)
    async with database.transaction() as session:
        result = await session.execute(text("DELETE FROM idempotency_keys WHERE created_at < :cutoff"), {"cutoff": cutoff})
    return result.rowcount or 0
