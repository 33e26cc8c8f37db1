"""Bringing a payment in line with what Stripe says, from any source.

The API (answers to our calls), webhooks and the reconciler all report the same
thing: a PaymentIntent as Stripe sees it. They all apply it here, through the
state machine, so a stale or out-of-order report can never move a payment back.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, outbound
from paymentd.audit import context as audit_context
from paymentd.db import Database, RowSink, driver_of
from paymentd.fraud import postauth, reviews
from paymentd.logs import log
from paymentd.payments import consistency, repository, sql
from paymentd.payments.models import Payment, PaymentAttempt, PaymentEvent
from paymentd.payments.schemas import present_payment
from paymentd.payments.states import PaymentStatus, can_move, transition
from paymentd.providers.base import (
    PaymentMethodInfo,
    PaymentProvider,
    ProviderError,
    ProviderPayment,
    ProviderStatus,
    RiskAssessment,
)
from paymentd.receipts.email import note_status_move

if TYPE_CHECKING:
    from paymentd.fraud.gate import FraudGate

# Statuses only refunds and disputes change (see states.py).
AFTER_THE_CHARGE = frozenset({PaymentStatus.partially_refunded, PaymentStatus.refunded, PaymentStatus.disputed})


@dataclass(frozen=True)
class Actor:
    """Who moved a payment: recorded on every status event."""

    source: str  # api | webhook | reconciler
    api_key_id: uuid.UUID | None = None
    request_id: str | None = None
    # The audit trail's actor when it is not the source's own (paymentd's own background
    # decisions, e.g. a review's deadline: source reconciler, audited as system).
    audit_as: audit.Actor | None = None

    def audit(self) -> audit.Actor:
        """The audit trail's actor: the API key, the webhook's event (from the job's
        context), or the reconciler."""
        if self.audit_as is not None:
            return self.audit_as
        if self.source == "api":
            return audit.Actor("api_key", str(self.api_key_id) if self.api_key_id else None)
        if self.source == "webhook":
            acting = audit_context.current().actor
            return acting if acting is not None and acting.type == "webhook" else audit.Actor("webhook")
        return audit.Actor(self.source)


WEBHOOK = Actor("webhook")
RECONCILER = Actor("reconciler")


def apply_provider_payment(session: RowSink, payment: Payment, intent: ProviderPayment, actor: Actor) -> bool:
    """Copy Stripe's view onto the row and move the status along an allowed move.
    A report the state machine refuses (stale, out of order), or one that does not agree
    with the payment (consistency.py: another currency, more than its amount), changes
    nothing: False. Callers that can do better (the inbox) check consistency first."""
    if (inconsistency := consistency.of_payment(payment, intent)) is not None:
        log.warning("payment.report_refused", payment_id=str(payment.id), source=actor.source,
                    field=inconsistency.field, detail=inconsistency.detail)
        return False
    current = PaymentStatus(payment.status)
    if intent.status is ProviderStatus.unknown:
        log.warning("payment.unknown_provider_status", payment_id=str(payment.id))
        return False
    target = PaymentStatus(intent.status.value)
    if current in AFTER_THE_CHARGE:
        # Stripe keeps a refunded or disputed payment's PaymentIntent at `succeeded`;
        # from here refunds and disputes move the status, never PaymentIntent reports.
        return False
    if target != current and not can_move(current, target):
        log.info("payment.move_ignored", payment_id=str(payment.id), current=current.value, reported=target.value)
        return False
    payment.updated_at = datetime.now(UTC)
    payment.amount_capturable = intent.amount_capturable
    payment.amount_received = intent.amount_received
    payment.next_action = intent.next_action if intent.status is ProviderStatus.requires_action else None
    if intent.payment_method:
        payment.payment_method = intent.payment_method
    if intent.payment_method_details is not None:
        payment.payment_method_details = method_details(intent.payment_method_details)
    if intent.risk is not None:
        record_risk(payment, intent.risk)
    if intent.last_error is not None:
        payment.last_payment_error = asdict(intent.last_error)
    elif intent.status in (ProviderStatus.succeeded, ProviderStatus.requires_capture, ProviderStatus.processing):
        payment.last_payment_error = None
    if target != current:
        move(session, payment, target, actor)
    return True


def record_risk(payment: Payment, risk: RiskAssessment) -> None:
    """The processor's verdict on the latest attempt, onto the payment (API.md `risk`)."""
    payment.risk_level, payment.risk_score, payment.risk_outcome = risk.level, risk.score, risk.outcome


def move(session: RowSink, payment: Payment, target: PaymentStatus, actor: Actor) -> None:
    """The one place a payment's status is assigned (through `transition`), with its event."""
    current = payment.status
    payment.status = transition(PaymentStatus(current), target).value
    payment.updated_at = datetime.now(UTC)
    session.add(status_event(payment, current, payment.status, actor))
    audit.record(session, "payment.status_changed", account_id=payment.account_id, object_type="payment",
                 object_id=payment.id, changes={"status": (current, payment.status)}, actor=actor.audit())
    note_status_move(session, payment, current, payment.status)  # the receipt email, on first success
    emit_payment_event(session, payment, current)


def emit_payment_event(session: RowSink, payment: Payment, from_status: str | None) -> None:
    """The merchant's webhook for the payment's move, as the payment now stands (callers
    set every field the move changes, the error of a decline too, before moving)."""
    if (kind := outbound.payment_event_type(from_status, payment.status)) is not None:
        outbound.emit(session, kind, account_id=payment.account_id, object_type="payment", object_id=payment.id,
                      payload=present_payment(payment).model_dump(mode="json"))


def status_event(payment: Payment, current: str | None, target: str, actor: Actor) -> PaymentEvent:
    return PaymentEvent(
        payment_id=payment.id,
        from_status=current,
        to_status=target,
        source=actor.source,
        api_key_id=actor.api_key_id,
        request_id=actor.request_id,
    )


@dataclass(frozen=True)
class AttemptOutcome:
    """What Stripe's report says the open attempts came to."""

    outcome: str
    error_code: str | None = None
    decline_code: str | None = None
    error_message: str | None = None
    risk_level: str | None = None
    risk_score: int | None = None
    risk_outcome: str | None = None
    risk_reason: str | None = None


def attempt_risk(risk: RiskAssessment | None) -> dict[str, object]:
    """An attempt's risk columns from the processor's verdict (all None when it gave none)."""
    if risk is None:
        return {"risk_level": None, "risk_score": None, "risk_outcome": None, "risk_reason": None}
    return {"risk_level": risk.level, "risk_score": risk.score, "risk_outcome": risk.outcome,
            "risk_reason": risk.reason}


def confirmed_outcome(intent: ProviderPayment) -> AttemptOutcome | None:
    """The outcome of the confirmation Stripe reports, with Radar's verdict when the
    report carries it; None while it shows none (never confirmed, or a status we cannot read)."""
    if intent.status is ProviderStatus.unknown or _never_confirmed(intent):
        return None
    risk = attempt_risk(intent.risk)
    if intent.status is not ProviderStatus.requires_payment_method:
        return AttemptOutcome(intent.status.value, **risk)
    error = intent.last_error
    return AttemptOutcome("failed", error.code, error.decline_code, error.message, **risk)


def _never_confirmed(intent: ProviderPayment) -> bool:
    return intent.status is ProviderStatus.requires_confirmation or (
        intent.status is ProviderStatus.requires_payment_method and intent.last_error is None
    )


async def settle_open_attempts(
    session: AsyncSession, payment: Payment, intent: ProviderPayment, *, abandon_before: datetime | None = None
) -> None:
    """Attempts left pending (a crash) or unknown (Stripe unreachable) take the
    outcome Stripe now reports, once Stripe has moved past confirmation.

    When Stripe shows no confirmation at all, an attempt older than `abandon_before`
    (the reconciler's cutoff, past any call still in flight) never reached Stripe:
    it is closed as abandoned and the payment may be confirmed again."""
    if (outcome := confirmed_outcome(intent)) is not None:
        await sql.close_open_attempts(await driver_of(session), payment.id, **asdict(outcome))
    elif abandon_before is not None and intent.status is not ProviderStatus.unknown:
        await abandon_open_attempts(session, payment, before=abandon_before)


async def abandon_open_attempts(session: AsyncSession, payment: Payment, *, before: datetime) -> None:
    """Close attempts that never reached Stripe (opened before `before`, past any call
    still in flight); a payment shown as processing for them may be confirmed again."""
    attempts = (
        await session.scalars(
            select(PaymentAttempt).where(
                PaymentAttempt.payment_id == payment.id,
                PaymentAttempt.outcome.in_(repository.OPEN_OUTCOMES),
                PaymentAttempt.created_at < before,
            )
        )
    ).all()
    if attempts and payment.status == PaymentStatus.processing:
        payment.last_payment_error = {"type": "api_error", "code": "confirmation_abandoned", "decline_code": None,
                                      "message": "The confirmation never reached the processor; confirm again.",
                                      "payment_method": payment.payment_method}
        move(session, payment, PaymentStatus.requires_payment_method, RECONCILER)
    for attempt in attempts:
        attempt.outcome = "abandoned"
        attempt.finished_at = datetime.now(UTC)


async def refresh(
    database: Database,
    provider: PaymentProvider,
    payment_id: uuid.UUID,
    actor: Actor,
    *,
    timeout: float | None,
    abandon_before: datetime | None = None,
    fraud: FraudGate | None = None,
) -> bool:
    """Ask Stripe for a payment's truth and record it. False when Stripe did not
    answer in time, or answered something inconsistent with the payment (the stored
    state stands; a later look will settle it)."""
    async with database.transaction() as session:
        payment = await repository.get_by_id(session, payment_id, lock=abandon_before is not None)
        intent_id = payment.stripe_payment_intent_id if payment else None
        if payment is not None and intent_id is None and abandon_before is not None:
            # Its process died before Stripe made a PaymentIntent: nothing was sent.
            await abandon_open_attempts(session, payment, before=abandon_before)
    if intent_id is None:
        return False
    try:
        intent = await asyncio.wait_for(provider.retrieve_payment(intent_id), timeout)
    except (ProviderError, TimeoutError) as error:
        log.info("payment.refresh_skipped", payment_id=str(payment_id), reason=type(error).__name__)
        return False
    async with database.transaction() as session:
        payment = await repository.get_by_id(session, payment_id, lock=True)
        if (inconsistency := consistency.of_payment(payment, intent)) is not None:
            # Stripe's own answer, read with our key, disagrees with our record: nothing
            # automatic can settle that; a person must look.
            log.error("payment.processor_inconsistent", payment_id=str(payment_id), source=actor.source,
                      field=inconsistency.field, detail=inconsistency.detail)
            return False
        if apply_provider_payment(session, payment, intent, actor):
            await reviews.note_processor_review(session, payment, intent, actor.audit())
        await settle_open_attempts(session, payment, intent, abandon_before=abandon_before)
        decision = await postauth.evaluate(session, fraud, payment, actor.audit())
    if decision is not None and decision.action == "block":
        await postauth.enforce(database, provider, payment_id)
    return True


def method_details(info: PaymentMethodInfo) -> dict:
    """What receipts may show of a method: type, label, brand and last 4. Never more."""
    card = info.card
    return {
        "type": info.type,
        "label": info.label,
        "card": {"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month, "exp_year": card.exp_year}
        if card
        else None,
    }
