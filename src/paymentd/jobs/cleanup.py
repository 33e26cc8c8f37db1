"""Housekeeping: Idempotency-Keys are promised for at least `idempotency_ttl_hours`
(API.md: 24 h), and forgotten after, so the table does not grow forever; the webhook
inbox keeps Stripe's payloads only `webhook_retention_days`, and event ids longer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from paymentd.db import Database

# An event id is kept at least this long, whatever the payload retention: Stripe retries
# a delivery for up to 3 days, keeps events (and lets them be resent or listed, as the
# reconciler does) for 30 days. Three times that, so a late redelivery or a listing of an
# old event is still recognized as a duplicate and never applied twice.
EVENT_ID_KEEP_DAYS = 90
# Rows per statement: a first purge of a large inbox must not hold one long transaction.
PURGE_BATCH = 5_000


async def delete_expired_idempotency_keys(database: Database, ttl_hours: int, *, now: datetime | None = None) -> int:
    cutoff = (now or datetime.now(UTC)) - timedelta(hours=ttl_hours)
    async with database.transaction() as session:
        result = await session.execute(text("DELETE FROM idempotency_keys WHERE created_at < :cutoff"), {"cutoff": cutoff})
    return result.rowcount or 0


@dataclass(frozen=True)
class InboxPurge:
    payloads_purged: int
    events_forgotten: int


async def purge_webhook_inbox(database: Database, retention_days: int, *, now: datetime | None = None) -> InboxPurge:
    """Blank the payloads of processed events received more than `retention_days` ago (the
    row, its id, type, PaymentIntent and outcome stay), and delete rows older than both
    that and EVENT_ID_KEEP_DAYS. Unprocessed events keep their payload: they still have
    to be applied."""
    now = now or datetime.now(UTC)
    payload_cutoff = now - timedelta(days=retention_days)
    row_cutoff = now - timedelta(days=max(retention_days, EVENT_ID_KEEP_DAYS))
    purged = await _batched(database, """
        UPDATE webhook_events SET payload = NULL WHERE id IN (
            SELECT id FROM webhook_events
            WHERE payload IS NOT NULL AND processed_at IS NOT NULL AND received_at < :cutoff
            LIMIT :batch)""", payload_cutoff)
    forgotten = await _batched(database, """
        DELETE FROM webhook_events WHERE id IN (
            SELECT id FROM webhook_events WHERE processed_at IS NOT NULL AND received_at < :cutoff LIMIT :batch)""",
        row_cutoff)
    return InboxPurge(purged, forgotten)


async def _batched(database: Database, statement: str, cutoff: datetime) -> int:
    total = 0
    while True:
        async with database.transaction() as session:
            result = await session.execute(text(statement), {"cutoff": cutoff, "batch": PURGE_BATCH})
        total += result.rowcount or 0
        if (result.rowcount or 0) < PURGE_BATCH:
            return total


@dataclass(frozen=True)
class OutboundPurge:
    deliveries_deleted: int
    events_deleted: int


async def purge_outbound(database: Database, retention_days: int, *, now: datetime | None = None) -> OutboundPurge:
    """Outbound webhooks older than `retention_days`: finished deliveries (their log), then
    events no delivery waits for. Pending ones stay, however old (a paused endpoint's);
    the per-object sequence counters stay forever, so numbering never restarts."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    deliveries = await _batched(database, """
        DELETE FROM webhook_deliveries WHERE id IN (
            SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < :cutoff LIMIT :batch)""",
        cutoff)
    events = await _batched(database, """
        DELETE FROM outbound_events WHERE id IN (
            SELECT e.id FROM outbound_events e WHERE e.created_at < :cutoff
              AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id) LIMIT :batch)""",
        cutoff)
    return OutboundPurge(deliveries, events)
