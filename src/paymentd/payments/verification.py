"""Payments to verify with the processor after one of its reports was refused.

A refused report (consistency.py) says the payment may not be what paymentd recorded,
or that someone sent a lie: either way the processor is asked for the payment and its
own answer applied through the normal path (`sync.refresh`, which checks it the same
way). The request is a row written in the transaction that refuses the report, so it
survives a crash; the refusing job verifies at once, the reconciler retries what is left.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from paymentd.db import Database
from paymentd.logs import log
from paymentd.payments import sync
from paymentd.providers.base import PaymentProvider

TIMEOUT_S = 10.0


async def request(conn: asyncpg.Connection, payment_id: uuid.UUID, reason: str, event_id: str | None) -> None:
    """Ask for a verification, in the caller's transaction (one pending per payment)."""
    await conn.execute(
        "INSERT INTO payment_verifications (payment_id, reason, event_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (payment_id) DO UPDATE SET reason = EXCLUDED.reason, event_id = EXCLUDED.event_id",
        payment_id, reason, event_id,
    )


async def verify(database: Database, provider: PaymentProvider, payment_id: uuid.UUID) -> bool:
    """Ask the processor and apply its answer; True when done (the request is closed).
    False leaves the request for the reconciler: no answer, or an answer that is itself
    inconsistent (logged as an error: it needs a person)."""
    try:
        done = await sync.refresh(database, provider, payment_id, sync.RECONCILER, timeout=TIMEOUT_S)
        error = None if done else "no consistent answer from the processor"
    except Exception as failure:  # noqa: BLE001 - recorded on the request, retried by the reconciler
        done, error = False, f"{type(failure).__name__}: {failure}"[:500]
    async with database.sql_transaction() as conn:
        if done:
            await conn.execute("DELETE FROM payment_verifications WHERE payment_id = $1", payment_id)
        else:
            await conn.execute(
                "UPDATE payment_verifications SET attempts = attempts + 1, last_error = $2,"
                " requested_at = clock_timestamp() WHERE payment_id = $1",
                payment_id, error,
            )
    log.info("payment.verified" if done else "payment.verification_pending", payment_id=str(payment_id),
             error=error)
    return done


async def pending(database: Database, before: datetime, limit: int) -> list[uuid.UUID]:
    """Requests older than `before` (the refusing job had its chance), oldest first."""
    async with database.sql_connection() as conn:
        rows = await conn.fetch(
            "SELECT payment_id FROM payment_verifications WHERE requested_at < $1 ORDER BY requested_at LIMIT $2",
            before, limit,
        )
    return [row["payment_id"] for row in rows]
