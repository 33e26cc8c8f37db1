"""Storing events once and applying them once.

`record` writes the inbox row and defers its job in one PostgreSQL transaction, so
an event is never stored without its job nor queued without its row. A delivered
event goes through `receive`: most bring nothing new (Stripe reporting what our own
call already recorded, or a move backwards), and one that can change nothing is
stored closed on arrival, saying why, without a job. That is decided by the rules the
job applies, against the payment as committed; the job would find the same, or a
payment moved on by newer news. `apply` moves
the payment through `payments.sync`, under the payment's row lock, and marks the row
processed in the same transaction: a second delivery, a retried job and the
reconciler all find the row processed and do nothing.

Ordering. Stripe delivers out of order, and a snapshot in an event may be older than
what paymentd already knows. The state machine refuses backward moves, but some
statuses can be left and entered again (requires_payment_method <-> requires_action,
processing <-> requires_capture ...), where a stale snapshot would look like a
legal move. So: a snapshot whose status is final for the charge (succeeded,
canceled) is applied as it is (nothing can follow it back); a snapshot that would
move the payment to an intermediate status is only a hint, and paymentd asks Stripe
for the PaymentIntent as it is now and applies that. Event timestamps are not used to
order: Stripe's `created` has one-second resolution, and the API path (whose
knowledge is not timestamped) moves payments too.

Refund events (REFUND_EVENT_TYPES) are applied through `refunds.service`, dispute
events (DISPUTE_EVENT_TYPES) through `disputes.service`, and Radar's reviews and early
fraud warnings (fraud.events.FRAUD_EVENT_TYPES) through `fraud.events`, each in the
transaction that marks the row processed; both only ever move their objects forward, so a stale
snapshot is harmless there and Stripe is not asked again.

Trust. A signature proves who sent an event, not that it is right. Every event is
checked against the payment it names (payments/consistency.py: account and mode,
PaymentIntent id, currency, amounts) before anything of it is applied; an inconsistent
one is refused whole, its row closed saying why (`refused: inconsistent ...`), logged,
and its payment verified with Stripe (payments/verification.py), whose own answer is
applied through the normal path and checked the same way.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
from psycopg.types.json import Jsonb

from paymentd import audit, crypto, metrics
from paymentd.audit import context as audit_context
from paymentd.crypto.fields import open_event, seal_event
from paymentd.db import Database, after_commit, driver_of
from paymentd.disputes import service as disputes
from paymentd.fraud import events as fraud_events
from paymentd.fraud import postauth, reviews
from paymentd.fraud.events import FRAUD_EVENT_TYPES
from paymentd.fraud.gate import FraudGate
from paymentd.jobs.deps import Deps
from paymentd.logs import log
from paymentd.payments import consistency, sql, sync, verification
from paymentd.payments.models import Payment
from paymentd.payments.states import PaymentStatus, can_move, is_final_for_charge
from paymentd.providers.base import (
    ProviderError,
    ProviderEvent,
    ProviderFraudWarning,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
)
from paymentd.refunds import service as refunds
from paymentd.webhooks.codec import event_from_json, event_to_json
from paymentd.webhooks.models import WebhookEvent

if TYPE_CHECKING:
    from paymentd.jobs.queue import Jobs

APPLIED = "applied"
APPLIED_VERIFIED = "applied: verified with Stripe"
IGNORED_NOT_PAYMENT = "ignored: not an event paymentd applies"
# Refund events carry the refund (a ProviderRefund). `charge.refunded` is not among
# them: its charge no longer lists the refunds (Stripe API 2022-11-15 on), and every
# refund it reports also comes as refund.created / refund.updated.
REFUND_EVENT_TYPES = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
# Statuses past the charge that only refund and dispute events move (not a PaymentIntent).
PAST_THE_CHARGE = frozenset({PaymentStatus.partially_refunded, PaymentStatus.refunded, PaymentStatus.disputed})
DISPUTE_EVENT_TYPES = frozenset({
    "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
    "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated",
})
IGNORED_UNKNOWN_STATUS = "ignored: status unknown to paymentd"
IGNORED_NO_PAYMENT = "ignored: no payment with this PaymentIntent"
NOTHING_NEW = "ignored: nothing new (already recorded)"
OWN_WRITE_GRACE_S = 0.05

_INSERT = """
INSERT INTO webhook_events (id, type, created, payment_intent_id, payload, source)
VALUES (%(id)s, %(type)s, %(created)s, %(payment_intent_id)s, %(payload)s, %(source)s)
ON CONFLICT (id) DO NOTHING
RETURNING id
"""


class PaymentNotYetKnown(Exception):
    """The event concerns a PaymentIntent paymentd has no committed row for (yet):
    usually the webhook raced our own insert. Retried later."""


async def record(jobs: Jobs, event: ProviderEvent, *, source: str, defer: bool = True) -> bool:
    """Store the event unless already stored; with `defer`, queue its job in the
    same transaction. True when the event is new."""
    params = {
        "id": event.id,
        "type": event.type,
        "created": event.created,
        "payment_intent_id": event.payment_intent_id,
        "payload": Jsonb(seal_event(crypto.keyring(), event_to_json(event), event.id)),
        "source": source,
    }
    # procrastinate's own psycopg pool: its `defer(connection=...)` joins our
    # transaction, which SQLAlchemy's asyncpg connections could not offer.
    async with jobs.connection() as conn, conn.transaction():
        cursor = await conn.execute(_INSERT, params)
        inserted = await cursor.fetchone() is not None
        if inserted and defer:
            await jobs.defer_apply(event.id, connection=conn)
    return inserted


@dataclass(frozen=True)
class Arrival:
    """What became of a delivered event."""

    new: bool  # False: stored before, nothing done again
    outcome: str | None = None  # set when closed on arrival; else its job applies it


async def receive(
    database: Database, jobs: Jobs, event: ProviderEvent, origin: consistency.Origin = consistency.Origin(False),
    *, fraud_enabled: bool = True,
) -> Arrival:
    """A delivered event, stored once: closed on arrival when it can change nothing,
    else with its job. Plain SQL: every payment brings events, and a job costs the
    worker and the database more than the event itself. No transaction: the
    judgement reads committed rows, and the closed row is one insert."""
    for pause in (OWN_WRITE_GRACE_S, None):
        async with database.sql_connection() as conn:
            judged = await _judge(conn, event, origin, fraud_enabled)
            if judged.outcome is not None:
                new = await _store(conn, event, "webhook", judged.outcome)
                return Arrival(new, judged.outcome if new else None)
        if pause is None or not judged.racing:
            break
        # Stripe reports our own call's result as it answers us: our record of it is
        # usually a few milliseconds behind. Worth one short wait before a job.
        await asyncio.sleep(pause)
    return Arrival(await record(jobs, event, source="webhook"))


async def store(database: Database, event: ProviderEvent, *, source: str) -> bool:
    """Store the event without queueing a job (the reconciler applies what it finds
    itself). True when the event is new. Plain SQL: one per payment in a catch-up."""
    async with database.sql_transaction() as conn:
        return await _store(conn, event, source, None)


async def _store(conn: asyncpg.Connection, event: ProviderEvent, source: str, outcome: str | None) -> bool:
    """The inbox row, open, or closed with `outcome`; False when the event was stored before."""
    stored = await conn.fetchval(
        "INSERT INTO webhook_events (id, type, created, payment_intent_id, payload, source, processed_at, outcome)"
        " VALUES ($1, $2, $3, $4, $5::jsonb, $6, CASE WHEN $7::text IS NULL THEN NULL ELSE clock_timestamp() END,"
        " $7) ON CONFLICT (id) DO NOTHING RETURNING id",
        event.id, event.type, event.created, event.payment_intent_id,
        json.dumps(seal_event(crypto.keyring(), event_to_json(event), event.id)), source,
        outcome,
    )
    if stored is not None and outcome is not None:
        _closed(conn, event.created, source)
    return stored is not None


def _closed(conn: asyncpg.Connection, created: datetime, source: str) -> None:
    """The event's lag (Stripe's `created` to closed here), counted once its row commits."""
    after_commit(conn, lambda: metrics.stripe_event_closed(created.timestamp(), source))


@dataclass(frozen=True)
class _Judged:
    """What an event would do to its payment, judged on arrival."""

    outcome: str | None  # why it would change nothing; None: the job decides
    racing: bool = False  # the payment is not committed yet, or our own call on it is unanswered


async def _judge(conn: asyncpg.Connection, event: ProviderEvent, origin: consistency.Origin,
                 fraud_enabled: bool = True) -> _Judged:
    """Why applying the event would change nothing, judged as the job would against the
    payment as committed now; no outcome when it may change something, or only the job
    can tell (Stripe to ask, a payment not committed yet, refunds and disputes, and an
    inconsistent event: the job refuses it and has its payment verified)."""
    if event.type in REFUND_EVENT_TYPES or event.type in DISPUTE_EVENT_TYPES or event.type in FRAUD_EVENT_TYPES:
        return _Judged(None)
    if consistency.of_origin(event, origin) is not None:
        return _Judged(None)
    if not _about_payment(event):
        return _Judged(IGNORED_NOT_PAYMENT)
    payment = await sql.payment_by_intent(conn, event.payment_intent_id)
    if payment is None:
        return _Judged(None, racing=True)
    intent: ProviderPayment = event.object
    if consistency.of_payment(payment, intent) is not None:
        return _Judged(None)
    if intent.status is ProviderStatus.unknown:
        return _Judged(IGNORED_UNKNOWN_STATUS)

    async def attempt_open() -> bool:  # asked only where the answer matters
        return await sql.open_attempt(conn, payment.id) is not None

    if _needs_truth(payment.status, intent) or _lacks_details(payment.payment_method_details is not None, intent):
        return _Judged(None, racing=await attempt_open())
    if (refused := _refusal(payment, intent)) is not None:
        return _Judged(refused)
    if _changes(payment, intent):
        return _Judged(None, racing=await attempt_open())
    if sync.confirmed_outcome(intent) is not None and await attempt_open():
        return _Judged(None, racing=True)  # the job closes the attempt
    if await postauth.due(conn, fraud_enabled, payment):
        return _Judged(None)  # no report before ran the post-auth rules on this authorization: the job does
    return _Judged(NOTHING_NEW)


def _changes(payment: Payment, intent: ProviderPayment) -> bool:
    """Would the report change the payment? Found by applying it to this copy, read for
    the purpose and then dropped: the very code the job runs, so the two cannot disagree."""
    before = sql.fields(payment)
    batch = sql.Batch()
    sync.apply_provider_payment(batch, payment, intent, sync.WEBHOOK)
    after = sql.fields(payment)
    return bool(batch.rows) or any(after[key] != value for key, value in before.items() if key != "updated_at")


def _about_payment(event: ProviderEvent) -> bool:
    """A PaymentIntent report: applied to its payment (`_apply_payment`), not by a service."""
    return (isinstance(event.object, ProviderPayment) and event.payment_intent_id is not None
            and event.type not in DISPUTE_EVENT_TYPES)


def _intermediate(status: ProviderStatus) -> bool:
    return not is_final_for_charge(PaymentStatus(status.value))


async def apply(deps: Deps, event_id: str) -> str:
    """Apply one inbox row; returns its outcome. Raises PaymentNotYetKnown, or a
    ProviderError when Stripe must be asked and cannot answer (the caller retries)."""
    try:
        with audit_context.acting(audit_context.Actor("webhook", event_id)), postauth.collecting() as blocked:
            outcome = await _apply(deps, event_id)
    except Exception as error:
        async with deps.database.sql_transaction() as conn:
            await conn.execute(
                "UPDATE webhook_events SET attempts = attempts + 1, last_error = $2"
                " WHERE id = $1 AND processed_at IS NULL",
                event_id, f"{type(error).__name__}: {error}"[:500],
            )
        raise
    for payment_id in dict.fromkeys(blocked):
        # Committed: a post-auth rule's block cancels or refunds at the processor now.
        await postauth.enforce(deps.database, deps.provider, payment_id)
    if outcome.startswith(consistency.REFUSED):
        await _verify_for(deps, event_id)
    return outcome


async def _verify_for(deps: Deps, event_id: str) -> None:
    """Verify the payment a refused event named, now (the reconciler retries what fails)."""
    async with deps.database.sql_connection() as conn:
        payment_id = await conn.fetchval("SELECT payment_id FROM payment_verifications WHERE event_id = $1", event_id)
    if payment_id is not None:
        await verification.verify(deps.database, deps.provider, payment_id)


async def _refuse(
    conn: asyncpg.Connection, event_id: str, event: ProviderEvent, inconsistency: consistency.Inconsistency,
    payment_id: uuid.UUID | None,
) -> str:
    """An inconsistent event, refused whole: its row closed saying why and its payment's
    verification requested, in the caller's transaction (nothing of it was applied)."""
    log.warning("webhook.refused_inconsistent", event_id=event_id, type=event.type, field=inconsistency.field,
                detail=inconsistency.detail, payment_id=str(payment_id) if payment_id else None)
    account_id = None
    if payment_id is not None:
        await verification.request(conn, payment_id, inconsistency.outcome, event_id)
        account_id = await conn.fetchval("SELECT account_id FROM payments WHERE id = $1", payment_id)
    audit.record(conn, "webhook.refused", account_id=account_id,
                 object_type="payment" if payment_id else "webhook_event", object_id=payment_id or event_id,
                 actor=audit.Actor("webhook", event_id), outcome="refused",
                 changes={"inconsistent": (None, f"{inconsistency.field}: {inconsistency.detail}")})
    return await _finish(conn, event_id, inconsistency.outcome)


# The inbox row and the payment are read and written in plain SQL (payments/sql.py):
# every payment brings at least one event, and through the ORM session applying it
# cost more CPU than the API calls that made the payment.
_LOCK_ROW = "SELECT processed_at, outcome, payload, source FROM webhook_events WHERE id = $1 FOR UPDATE"


@dataclass(frozen=True)
class _Row:
    """An inbox row under its lock: already done (its outcome), or its event to apply."""

    done: str | None
    event: ProviderEvent | None  # None when done (a processed row's payload may be purged)
    actor: sync.Actor


async def _lock(conn: asyncpg.Connection, event_id: str) -> _Row:
    row = await conn.fetchrow(_LOCK_ROW, event_id)
    if row is None:
        raise LookupError(f"no inbox row {event_id}")
    done = (row["outcome"] or APPLIED) if row["processed_at"] is not None else None
    actor = sync.RECONCILER if row["source"] == "reconciler" else sync.WEBHOOK
    if done is not None:
        return _Row(done, None, actor)
    return _Row(done, event_from_json(open_event(crypto.keyring(), row["payload"], event_id)), actor)


async def _finish(conn: asyncpg.Connection, event_id: str, outcome: str) -> str:
    closed = await conn.fetchrow(
        "UPDATE webhook_events SET processed_at = clock_timestamp(), outcome = $2, attempts = attempts + 1,"
        " last_error = NULL WHERE id = $1 AND processed_at IS NULL RETURNING created, source",
        event_id, outcome,
    )
    if closed is not None:
        _closed(conn, closed["created"], closed["source"])
    return outcome


async def _apply(deps: Deps, event_id: str) -> str:
    async with deps.database.sql_transaction() as conn:
        row = await _lock(conn, event_id)
        if row.done is not None:
            return row.done
        event, actor = row.event, row.actor
        assert event is not None  # not done: the payload is there
        if (wrong := consistency.of_origin(event, consistency.Origin.of(deps.provider))) is not None:
            named = await sql.payment_by_intent(conn, event.payment_intent_id) if event.payment_intent_id else None
            return await _refuse(conn, event_id, event, wrong, named.id if named else None)
        if about_payment := _about_payment(event):
            payment = await sql.payment_by_intent(conn, event.payment_intent_id, lock=True)
            if payment is None:
                raise PaymentNotYetKnown(event.payment_intent_id)
            intent: ProviderPayment = event.object
            if (bad := consistency.of_payment(payment, intent)) is not None:
                return await _refuse(conn, event_id, event, bad, payment.id)
            if intent.status is ProviderStatus.unknown:
                return await _finish(conn, event_id, IGNORED_UNKNOWN_STATUS)
            current, seen = payment.status, payment.updated_at
            details_known = payment.payment_method_details is not None
            if not _needs_truth(current, intent) and not _lacks_details(details_known, intent):
                # The usual case: nothing to ask Stripe, so applied under the locks already held.
                return await _apply_payment(conn, event_id, event, payment, intent, actor, verified=False,
                                            fraud=_gate(deps))
    if not about_payment:
        return await _apply_other(deps, event_id, event, actor)
    verified = False
    # Normally one pass; again only if the payment moved between our look and our lock.
    for _ in range(3):
        if not verified and _needs_truth(current, intent):
            # Possibly stale (see the module docstring): ask Stripe, outside any transaction.
            intent = await deps.provider.retrieve_payment(event.payment_intent_id)
            verified = True
        elif not verified and _lacks_details(details_known, intent):
            # Final, but without the method that paid (a receipt needs it): worth one
            # look at Stripe, not worth a retry; the snapshot is applied either way.
            try:
                intent = await deps.provider.retrieve_payment(event.payment_intent_id)
                verified = True
            except ProviderError as error:
                log.info("webhook.details_unavailable", event_id=event_id, error_type=type(error).__name__)
                details_known = True  # do not ask again in this run
        async with deps.database.sql_transaction() as conn:
            row = await _lock(conn, event_id)
            if row.done is not None:
                return row.done
            payment = await sql.payment_by_intent(conn, event.payment_intent_id, lock=True)
            assert payment is not None  # payments are never deleted
            # Unverified and now suspicious, or verified against a payment that moved
            # since (the API answered meanwhile): look again.
            if (not verified and _needs_truth(payment.status, intent)) or (verified and payment.updated_at != seen):
                current, seen, verified = payment.status, payment.updated_at, False
                details_known = payment.payment_method_details is not None
                intent = event.object
                continue
            return await _apply_payment(conn, event_id, event, payment, intent, actor, verified=verified,
                                        fraud=_gate(deps))
    raise RuntimeError(f"payment for {event.payment_intent_id} kept moving; retrying later")


def _gate(deps: Deps) -> FraudGate:
    """The post-auth rules' gate, as the API's (on or off by the same setting)."""
    return FraudGate(deps.provider, enabled=deps.settings.fraud_rules_enabled)


def _same_failure(recorded: dict | None, intent: ProviderPayment) -> bool:
    """A failure report the payment has recorded already (our confirm's decline, its event
    arriving late): it is about that attempt, so it closes no attempt opened since."""
    error = intent.last_error
    if recorded is None or error is None or intent.status is not ProviderStatus.requires_payment_method:
        return False
    # Not the method: Stripe names the PaymentMethod it made of a test alias, our record the alias.
    return (recorded.get("code"), recorded.get("decline_code"), recorded.get("message")) == (
        error.code, error.decline_code, error.message)


async def _apply_payment(
    conn: asyncpg.Connection, event_id: str, event: ProviderEvent, payment: Payment, intent: ProviderPayment,
    actor: sync.Actor, *, verified: bool, fraud: FraudGate | None = None,
) -> str:
    """The PaymentIntent report onto the payment, both rows locked; the inbox row closed."""
    if (bad := consistency.of_payment(payment, intent)) is not None:
        if not verified:
            return await _refuse(conn, event_id, event, bad, payment.id)
        # Stripe's own answer disagrees with our record: no automatic fix; a person must look.
        log.error("payment.processor_inconsistent", event_id=event_id, payment_id=str(payment.id),
                  field=bad.field, detail=bad.detail)
        return await _finish(conn, event_id, f"{bad.outcome}; the processor's own answer")
    if (outcome := _refusal(payment, intent)) is None:
        known_failure = _same_failure(payment.last_payment_error, intent)
        batch = sql.Batch()
        if sync.apply_provider_payment(batch, payment, intent, actor):
            await sql.save(conn, payment, batch)
        if (settled := sync.confirmed_outcome(intent)) is not None and not known_failure:
            await sql.close_open_attempts(conn, payment.id, **asdict(settled))
        await reviews.note_processor_review(conn, payment, intent, actor.audit())
        await postauth.evaluate(conn, fraud, payment, actor.audit())
        outcome = APPLIED_VERIFIED if verified else APPLIED
    log.info("webhook.applied", event_id=event_id, type=event.type, outcome=outcome, payment_id=str(payment.id))
    return await _finish(conn, event_id, outcome)


def _refusal(payment: Payment, intent: ProviderPayment) -> str | None:
    """Why a PaymentIntent report may not touch the payment at all; None when it applies."""
    target = intent.status.value
    if payment.status in PAST_THE_CHARGE:
        # Stripe's PaymentIntent stays `succeeded` through refunds and disputes, so
        # its snapshot says nothing about them; taken as a move, it would undo a
        # refund (the state machine allows refunded -> succeeded for failed refunds).
        return f"ignored: payment is {payment.status}; refund and dispute events move it now"
    if intent.status is ProviderStatus.unknown or (target != payment.status and not can_move(payment.status, target)):
        # A report the state machine refuses: do not copy its fields either.
        return f"ignored: stale ({target} reported, payment is {payment.status})"
    return None


async def _apply_other(deps: Deps, event_id: str, event: ProviderEvent, actor: sync.Actor) -> str:
    """Refund and dispute events, through their services' ORM sessions; anything else is
    ignored. A service that finds the report inconsistent rolls back and it is refused."""
    try:
        outcome = await _apply_by_service(deps, event_id, event, actor)
        if event.type in fraud_events.WARNING_EVENT_TYPES and isinstance(event.object, ProviderFraudWarning):
            # Committed: the refund the warning reserved (if any) goes to Stripe now.
            await fraud_events.send_warning_refund(deps.database, deps.provider, event.object.id, actor)
        return outcome
    except consistency.InconsistentReport as refused:
        async with deps.database.sql_transaction() as conn:
            row = await _lock(conn, event_id)
            if row.done is not None:
                return row.done
            return await _refuse(conn, event_id, event, refused.inconsistency, refused.payment_id)


async def _apply_by_service(deps: Deps, event_id: str, event: ProviderEvent, actor: sync.Actor) -> str:
    async with deps.database.transaction() as session:
        row = await session.get(WebhookEvent, event_id, with_for_update=True)  # the lock, again
        if row.processed_at is not None:
            return row.outcome or APPLIED
        if event.type in REFUND_EVENT_TYPES and isinstance(event.object, ProviderRefund):
            # Raises RefundNotYetKnown while one of the payment's own refund calls is unanswered.
            outcome = await refunds.apply_refund_event(session, event.object, actor)
        elif event.type in DISPUTE_EVENT_TYPES:
            # Raises DisputeNotYetApplicable while the payment is not captured here yet.
            outcome = await disputes.apply_dispute_event(session, event, actor)
        elif event.type in fraud_events.REVIEW_EVENT_TYPES:
            outcome = await fraud_events.apply_review_event(session, event, actor)
        elif event.type in fraud_events.WARNING_EVENT_TYPES:
            # Raises WarningNotYetApplicable while the payment is not captured here yet.
            outcome = await fraud_events.apply_warning_event(session, event, actor)
        else:
            outcome = IGNORED_NOT_PAYMENT
        log.info("webhook.applied", event_id=event_id, type=event.type, outcome=outcome)
        return await _finish(await driver_of(session), event_id, outcome)


def _lacks_details(details_known: bool, intent: ProviderPayment) -> bool:
    """A charge that went through (3-D Secure, a bank redirect, a debit settling) whose
    event snapshot does not expand the charge: the payment method's brand/last 4 or bank
    label would be missing from the receipt. Stripe's PaymentIntent, fetched, has them."""
    return (not details_known and intent.payment_method_details is None
            and intent.status in (ProviderStatus.succeeded, ProviderStatus.requires_capture))


def _needs_truth(current: str, intent: ProviderPayment) -> bool:
    """A move to an intermediate status, which a stale snapshot could fake."""
    target = intent.status.value
    return target != current and can_move(current, target) and _intermediate(intent.status)


async def give_up(database: Database, event_id: str, outcome: str) -> None:
    """Close a row no one can apply (its PaymentIntent is not paymentd's)."""
    async with database.sql_transaction() as conn:
        await _finish(conn, event_id, outcome)
