"""The reconciler: finds what the request path and webhooks left unsettled, and asks
Stripe. Runs every `reconcile_interval_s` on the queue and as `paymentd reconcile`.

One sweep, four passes, each safe to run twice or concurrently:
  1. payments with a confirm attempt still pending/unknown (a crash, a timeout), or
     sitting in processing/requires_action, for longer than `reconcile_after_s`:
     refreshed from Stripe through `payments.sync.refresh` (source reconciler);
  2. Stripe's events since the last sweep (a high-water mark in `reconciler_marks`),
     to catch webhooks that never arrived: stored in the same inbox as webhooks
     (unique id, so never applied twice) and applied with source reconciler;
  3. inbox rows nobody applied for longer than `reconcile_after_s` (a job that ran
     out of retries, an event that beat its payment's insert): applied again, and
     given up on once older than GIVE_UP_AFTER (the PaymentIntent is not paymentd's);
  4. refunds left pending for longer than `reconcile_after_s`: the keyed create
     re-sent, or Stripe asked (`refunds.service.reconcile_refunds`);
  5. payments whose verification, requested when a report about them was refused as
     inconsistent, is still open (`payments.verification`): Stripe asked again.
Everything the sweep applies is checked for consistency like any report (sync.refresh).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from paymentd import metrics
from paymentd.audit import context as audit_context
from paymentd.fraud import postauth
from paymentd.fraud.events import FRAUD_EVENT_TYPES
from paymentd.fraud.gate import FraudGate
from paymentd.jobs.deps import Deps
from paymentd.logs import log
from paymentd.payments import sync, verification
from paymentd.providers.base import ProviderError
from paymentd.providers.limiter import outbound_deadline
from paymentd.refunds.service import reconcile_refunds
from paymentd.webhooks import inbox
from paymentd.webhooks.models import WebhookEvent

EVENTS_MARK = "stripe_events"
# The events that can change a payment, its refunds, disputes, reviews or fraud warnings,
# as the inbox applies them (Stripe takes at most 20 types; these are 20: a new one needs
# a second listing).
PAYMENT_EVENT_TYPES = (
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.partially_funded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    *sorted(inbox.REFUND_EVENT_TYPES),
    *sorted(inbox.DISPUTE_EVENT_TYPES),
    *sorted(FRAUD_EVENT_TYPES),
)
# No mark yet (a new installation): look back this far.
FIRST_LOOKBACK = timedelta(hours=24)
# An unapplied inbox row this old concerns a PaymentIntent paymentd never created.
GIVE_UP_AFTER = timedelta(hours=24)
BATCH = 200
STRIPE_CONCURRENCY = 8
REFRESH_TIMEOUT_S = 10.0
SWEEP_STRIPE_WAIT_S = 60.0


@dataclass
class SweepReport:
    payments_checked: int = 0
    payments_refreshed: int = 0
    events_listed: int = 0
    events_missed: int = 0
    inbox_applied: int = 0
    inbox_waiting: int = 0
    inbox_given_up: int = 0
    refunds_checked: int = 0
    payments_verified: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


async def sweep(deps: Deps, *, now: datetime | None = None) -> SweepReport:
    with audit_context.acting(audit_context.RECONCILER):  # what it changes is audited as the reconciler's
        return await _sweep(deps, now=now)


async def _sweep(deps: Deps, *, now: datetime | None = None) -> SweepReport:
    now = now or datetime.now(UTC)
    after = timedelta(seconds=deps.settings.reconcile_after_s)
    report = SweepReport()
    # Background work: it may wait for the shared Stripe rate limit well past a request's budget.
    # Each pass gets its own limiter deadline: a slow first pass must not starve the rest.
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await refresh_stale_payments(deps, now - after, now - deps.settings.attempt_horizon, report)
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await catch_up_events(deps, now, after, report)
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await apply_unprocessed(deps, now, after, report)
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await settle_refunds(deps, after, report)
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await enforce_post_auth(deps, after, report)
    with outbound_deadline(time.monotonic() + SWEEP_STRIPE_WAIT_S):
        await verify_requested(deps, now - after, report)
    metrics.reconciler_missed_events(report.events_missed)
    log.info("reconciler.sweep", **{k: v for k, v in report.as_dict().items() if k != "errors"},
             errors=len(report.errors))
    return report


async def refresh_stale_payments(deps: Deps, cutoff: datetime, abandon_before: datetime, report: SweepReport) -> None:
    """Ask Stripe about payments left pending past `cutoff`. An attempt Stripe never saw
    is abandoned only once it is older than `abandon_before`: past the longest a live
    process may still be sending it (its queue wait and the SDK's retries)."""
    query = text(
        """
        SELECT p.id FROM payments p
        WHERE (p.stripe_payment_intent_id IS NOT NULL
               AND p.status IN ('processing', 'requires_action') AND p.updated_at < :cutoff)
           -- An open attempt without a PaymentIntent: its process died before Stripe
           -- made one, so nothing was sent; sync.refresh abandons it.
           OR EXISTS (SELECT 1 FROM payment_attempts a
                      WHERE a.payment_id = p.id AND a.outcome IN ('pending', 'unknown')
                        AND a.created_at < :cutoff)
        ORDER BY p.updated_at
        LIMIT :limit
        """
    )
    async with deps.database.transaction() as session:
        ids = list((await session.scalars(query, {"cutoff": cutoff, "limit": BATCH})).all())
    report.payments_checked = len(ids)
    gate = asyncio.Semaphore(STRIPE_CONCURRENCY)
    fraud = FraudGate(deps.provider, enabled=deps.settings.fraud_rules_enabled)

    async def one(payment_id: uuid.UUID) -> None:
        async with gate:
            try:
                if await sync.refresh(deps.database, deps.provider, payment_id, sync.RECONCILER,
                                      timeout=REFRESH_TIMEOUT_S, abandon_before=abandon_before, fraud=fraud):
                    report.payments_refreshed += 1
            except Exception as error:  # noqa: BLE001 - one payment must not stop the sweep
                report.errors.append(f"payment {payment_id}: {type(error).__name__}")
                log.exception("reconciler.refresh_failed", payment_id=str(payment_id))

    await asyncio.gather(*(one(payment_id) for payment_id in ids))


async def enforce_post_auth(deps: Deps, after: timedelta, report: SweepReport) -> None:
    """Post-auth fraud blocks whose cancel or refund a crash left undone (fraud/postauth.py)."""
    try:
        await postauth.enforce_due(deps.database, deps.provider, older_than=after, limit=BATCH)
    except Exception as error:  # noqa: BLE001 - the next sweep tries again
        report.errors.append(f"post_auth: {type(error).__name__}")
        log.exception("reconciler.post_auth_failed")


async def catch_up_events(deps: Deps, now: datetime, after: timedelta, report: SweepReport) -> None:
    mark = await _mark(deps)
    # Overlap the previous window by `after`: events Stripe lists late, and events
    # skipped last time because their payment's row was not committed yet.
    since = (mark - after) if mark else now - FIRST_LOOKBACK
    try:
        listed = [event async for event in deps.provider.list_events(created_gte=since, types=PAYMENT_EVENT_TYPES)]
    except ProviderError as error:
        report.errors.append(f"list_events: {type(error).__name__}")
        log.warning("reconciler.list_events_failed", error_type=type(error).__name__)
        return  # the mark stays: the next sweep lists the same window
    report.events_listed = len(listed)
    intents = {event.payment_intent_id for event in listed if event.payment_intent_id}
    known: set[str] = set()
    stored: set[str] = set()
    if intents:
        # = ANY(array), not IN: a day's lookback may list more events than a statement takes parameters.
        async with deps.database.transaction() as session:
            known = set(await session.scalars(
                text("SELECT stripe_payment_intent_id FROM payments WHERE stripe_payment_intent_id = ANY(:ids)"),
                {"ids": list(intents)}))
            # With webhooks arriving, nearly every listed event is in the inbox already:
            # one query here rather than one insert attempt per event.
            stored = set(await session.scalars(
                text("SELECT id FROM webhook_events WHERE id = ANY(:ids)"), {"ids": [event.id for event in listed]}))
    # Stripe lists newest first; apply in the order things happened.
    for event in sorted(listed, key=lambda e: e.created):
        if event.id in stored:
            continue  # the webhook (or an earlier sweep) has it
        if event.payment_intent_id not in known:
            # Not paymentd's PaymentIntent, or its row is not committed yet: the
            # overlap brings a recent one back next sweep.
            continue
        if not await inbox.store(deps.database, event, source="reconciler"):
            continue  # the webhook (or an earlier sweep) has it
        report.events_missed += 1
        try:
            await inbox.apply(deps, event.id)
        except Exception as error:  # noqa: BLE001 - stays in the inbox for pass 3
            report.errors.append(f"event {event.id}: {type(error).__name__}")
    await _set_mark(deps, now)


async def apply_unprocessed(deps: Deps, now: datetime, after: timedelta, report: SweepReport) -> None:
    async with deps.database.transaction() as session:
        rows = (
            await session.execute(
                select(WebhookEvent.id, WebhookEvent.received_at)
                .where(WebhookEvent.processed_at.is_(None), WebhookEvent.received_at < now - after)
                .order_by(WebhookEvent.received_at)
                .limit(BATCH)
            )
        ).all()
    for event_id, received_at in rows:
        try:
            await inbox.apply(deps, event_id)
            report.inbox_applied += 1
        except inbox.PaymentNotYetKnown:
            if received_at < now - GIVE_UP_AFTER:
                await inbox.give_up(deps.database, event_id, inbox.IGNORED_NO_PAYMENT)
                report.inbox_given_up += 1
            else:
                report.inbox_waiting += 1
        except Exception as error:  # noqa: BLE001 - retried next sweep
            report.inbox_waiting += 1
            report.errors.append(f"event {event_id}: {type(error).__name__}")


async def settle_refunds(deps: Deps, after: timedelta, report: SweepReport) -> None:
    try:
        report.refunds_checked = await reconcile_refunds(deps.database, deps.provider, older_than=after)
    except Exception as error:  # noqa: BLE001 - the next sweep tries again
        report.errors.append(f"refunds: {type(error).__name__}")
        log.exception("reconciler.refunds_failed")


async def verify_requested(deps: Deps, before: datetime, report: SweepReport) -> None:
    """Payments whose refused report asked for a verification the refusing job could not finish."""
    for payment_id in await verification.pending(deps.database, before, BATCH):
        if await verification.verify(deps.database, deps.provider, payment_id):
            report.payments_verified += 1
        else:
            report.errors.append(f"verify {payment_id}: still open")


async def _mark(deps: Deps) -> datetime | None:
    async with deps.database.transaction() as session:
        return await session.scalar(text("SELECT value FROM reconciler_marks WHERE name = :name"),
                                    {"name": EVENTS_MARK})


async def _set_mark(deps: Deps, value: datetime) -> None:
    async with deps.database.transaction() as session:
        # GREATEST: a slow sweep finishing after a faster one never moves the mark back.
        await session.execute(
            text(
                """
                INSERT INTO reconciler_marks (name, value) VALUES (:name, :value)
                ON CONFLICT (name) DO UPDATE
                SET value = GREATEST(reconciler_marks.value, EXCLUDED.value), updated_at = clock_timestamp()
                """
            ),
            {"name": EVENTS_MARK, "value": value},
        )
