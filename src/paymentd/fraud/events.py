"""Applying the processor's fraud events: its reviews (`review.opened` / `review.closed`)
and the issuers' early fraud warnings (`radar.early_fraud_warning.created` / `.updated`).

Each is applied in the transaction that closes its inbox row, under the payment's lock,
after the consistency check every report gets (payments/consistency.py), so it happens
once however often it is delivered. Warnings are also one row per warning id: a second
event about the same warning updates that row, and `actionable` only ever goes from true
to false (as at Stripe). An actionable warning, on an account that says so, reserves a
full refund with reason `fraudulent` in that same transaction and records it on the
warning: a second event, a retried job or a second worker finds the refund there and
makes no other. The refund is sent after the commit (`send_warning_refund`); a crash
before leaves it pending, and the reconciler re-sends the same keyed create.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, outbound
from paymentd.db import Database, driver_of
from paymentd.errors import Conflict
from paymentd.fraud import reviews
from paymentd.fraud import settings as fraud_settings
from paymentd.fraud.models import APPROVED, DENIED, OPEN, EarlyFraudWarning
from paymentd.fraud.schemas import present_warning
from paymentd.logs import log
from paymentd.payments import consistency, sync
from paymentd.payments import repository as payments_repository
from paymentd.payments.models import Payment
from paymentd.payments.states import CHARGE_FINAL, PaymentStatus
from paymentd.providers.base import PaymentProvider, ProviderEvent, ProviderFraudWarning, ProviderReview
from paymentd.refunds import service as refunds

REVIEW_EVENT_TYPES = frozenset({"review.opened", "review.closed"})
WARNING_EVENT_TYPES = frozenset({"radar.early_fraud_warning.created", "radar.early_fraud_warning.updated"})
FRAUD_EVENT_TYPES = REVIEW_EVENT_TYPES | WARNING_EVENT_TYPES
IGNORED_NO_PAYMENT = "ignored: no payment with this PaymentIntent"
# Captured money a warning's refund can take back.
REFUNDABLE = frozenset({PaymentStatus.succeeded, PaymentStatus.partially_refunded})


class DecisionUnderWay(Exception):
    """The processor closed a review that paymentd is deciding right now (its approval at
    the processor is ours): retried later, when ours has closed it as decided here."""


class WarningNotYetApplicable(Exception):
    """A warning about a payment not yet captured in paymentd's record (its own succeeded
    report still on the way). Retried later, as disputes are."""


async def _payment(session: AsyncSession, event: ProviderEvent, intent_id: str | None) -> Payment | None:
    intent_id = event.payment_intent_id or intent_id
    if intent_id is None:
        return None
    return await payments_repository.get_by_intent(session, intent_id, lock=True)


# --------------------------------------------------------------------------- reviews


async def apply_review_event(session: AsyncSession, event: ProviderEvent, actor: sync.Actor) -> str:
    """Radar's review onto the shared review list: opened once, closed once."""
    report = event.object
    if not isinstance(report, ProviderReview):
        return "ignored: not a review"
    payment = await _payment(session, event, report.payment_id)
    if payment is None:
        return IGNORED_NO_PAYMENT
    if (bad := consistency.of_review(payment, intent_id=report.payment_id)) is not None:
        raise consistency.InconsistentReport(payment.id, bad)
    who = actor.audit()
    ours = await reviews.by_processor_id(session, report.id)
    if ours is None:
        # Not seen yet (the confirm answer named none, or this is its first news): open it.
        ours = await reviews.open_review(session, payment=payment, reason=_reason(payment, report),
                                         source="radar", stripe_review_id=report.id, actor=who)
        if ours.stripe_review_id != report.id:
            # The payment's Radar review here is another one of the processor's (a second charge).
            return f"ignored: the payment's Radar review is {ours.stripe_review_id}"
    if report.open:
        return f"applied: review {ours.status}"
    if ours.status != OPEN:
        return f"ignored: review already {ours.status}"
    if ours.decision is not None:
        raise DecisionUnderWay(str(ours.id))
    status = APPROVED if report.closed_reason == "approved" else DENIED
    await reviews.close(session, ours, payment=payment, status=status,
                        closed_reason=f"processor_{report.closed_reason or 'closed'}", actor=who)
    return f"applied: review {status} at the processor ({report.closed_reason})"


def _reason(payment: Payment, report: ProviderReview) -> str:
    if payment.risk_level in ("elevated", "highest"):
        return f"{payment.risk_level}_risk_level"
    return f"processor_{report.opened_reason or 'review'}"


# --------------------------------------------------------------------------- early fraud warnings


async def apply_warning_event(session: AsyncSession, event: ProviderEvent, actor: sync.Actor) -> str:
    """Record the warning (once per id) and, when actionable and the account refunds
    warnings, reserve the payment's full refund as fraudulent (once per warning)."""
    report = event.object
    if not isinstance(report, ProviderFraudWarning):
        return "ignored: not an early fraud warning"
    payment = await _payment(session, event, report.payment_id)
    if payment is None:
        return IGNORED_NO_PAYMENT
    if (bad := consistency.of_fraud_warning(payment, intent_id=report.payment_id)) is not None:
        raise consistency.InconsistentReport(payment.id, bad)
    if payment.amount_received == 0 and PaymentStatus(payment.status) not in CHARGE_FINAL:
        raise WarningNotYetApplicable(f"payment {payment.id} is {payment.status}")
    who = actor.audit()
    row = await session.scalar(select(EarlyFraudWarning).where(
        EarlyFraudWarning.provider_warning_id == report.id).with_for_update())
    if row is None:
        row = EarlyFraudWarning(account_id=payment.account_id, payment_id=payment.id,
                                provider_warning_id=report.id, fraud_type=report.fraud_type,
                                actionable=report.actionable, created_at=report.created or datetime.now(UTC))
        session.add(row)
        await session.flush()
        audit.record(session, "early_fraud_warning.created", account_id=payment.account_id,
                     object_type="early_fraud_warning", object_id=report.id, actor=who,
                     changes={"payment_id": (None, payment.id), "fraud_type": (None, report.fraud_type),
                              "actionable": (None, report.actionable)})
        outbound.emit(session, "early_fraud_warning.created", account_id=payment.account_id,
                      object_type="early_fraud_warning", object_id=report.id,
                      payload={**present_warning(row).model_dump(mode="json"), "payment_id": str(payment.id)})
        noted = "warning recorded"
    elif row.actionable and not report.actionable:
        row.actionable = False
        row.updated_at = datetime.now(UTC)
        audit.record(session, "early_fraud_warning.updated", account_id=payment.account_id,
                     object_type="early_fraud_warning", object_id=report.id, actor=who,
                     changes={"actionable": (True, False)})
        noted = "warning no longer actionable"
    else:
        noted = "warning unchanged"  # a repeat, or stale news (actionable never comes back)
    refunded = await _refund_for(session, payment, row, who)
    log.info("early_fraud_warning.applied", warning=report.id, payment_id=str(payment.id), noted=noted,
             refunded=refunded)
    return f"applied: {noted}{'; ' + refunded if refunded else ''}"


async def _refund_for(session: AsyncSession, payment: Payment, row: EarlyFraudWarning,
                      who: audit.Actor) -> str | None:
    """Reserve the full refund an actionable warning calls for, unless made already."""
    if not row.actionable or row.refund_id is not None or PaymentStatus(payment.status) not in REFUNDABLE:
        return None
    settings = await fraud_settings.of_account(await driver_of(session), payment.account_id)
    if not settings.auto_refund_early_fraud_warnings:
        return None
    try:
        # Keyed by the warning: the same refund id however often this runs.
        refund = await refunds.reserve(session, payment, reason="fraudulent",
                                       refund_id=uuid.uuid5(row.id, "early_fraud_warning"))
    except Conflict:
        return None  # nothing left to refund (refunded already, by a person or Stripe)
    row.refund_id = refund.id
    row.updated_at = datetime.now(UTC)
    audit.record(session, "early_fraud_warning.refunded", account_id=payment.account_id,
                 object_type="early_fraud_warning", object_id=row.provider_warning_id, actor=who,
                 changes={"refund_id": (None, refund.id), "amount": (None, refund.amount)})
    return f"refund {refund.id} of {refund.amount} reserved"


async def send_warning_refund(database: Database, provider: PaymentProvider, warning_id: str,
                              actor: sync.Actor) -> None:
    """Send the refund a warning reserved (after its transaction committed); nothing when
    none was reserved or it is sent already."""
    async with database.transaction() as session:
        refund_id = await session.scalar(select(EarlyFraudWarning.refund_id).where(
            EarlyFraudWarning.provider_warning_id == warning_id))
    if refund_id is not None:
        await refunds.RefundService(database, provider).send(refund_id, actor)
