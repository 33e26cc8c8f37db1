"""Applying Stripe's dispute events to paymentd's record.

Each `charge.dispute.*` event carries the dispute as Stripe sees it. It is upserted
into `disputes` (statuses only move forward, closed ones are final, so a stale or
repeated event changes nothing), then the payment's status is derived from all of
its disputes, under the payment's row lock, through `sync.move`:
  - a dispute open, or one lost      -> `disputed` (a lost one stays there);
  - every dispute closed in the merchant's favour (won, inquiry closed, prevented)
                                     -> what the refunds imply: succeeded,
                                        partially_refunded or refunded.
A dispute on a payment paymentd has not yet seen captured (its own succeeded event
still on the way) raises DisputeNotYetApplicable: the job retries it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, outbound
from paymentd.disputes.models import CLOSED, LOST, WON, Dispute, rank
from paymentd.disputes.schemas import present_dispute
from paymentd.logs import log
from paymentd.payments import repository as payments_repository
from paymentd.payments import consistency, sync
from paymentd.payments.models import Payment
from paymentd.payments.states import CHARGE_FINAL, PaymentStatus, can_move
from paymentd.providers.base import ProviderEvent, unix_time
from paymentd.refunds import repository as refunds_repository

IGNORED_NO_PAYMENT = "ignored: no payment with this PaymentIntent"
IGNORED_NO_INTENT = "ignored: the dispute names no PaymentIntent paymentd knows"


class DisputeNotYetApplicable(Exception):
    """The disputed payment is not captured in paymentd's record yet (its own
    succeeded event is still on the way). Retried later."""


@dataclass(frozen=True)
class DisputeReport:
    """A dispute as an event reports it, in paymentd's words. Amounts in minor units."""

    id: str
    charge_id: str | None
    payment_intent_id: str | None
    amount: int
    currency: str
    reason: str | None
    status: str
    created: datetime | None
    evidence_due_by: datetime | None


def _id_of(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def report_from_object(obj: Mapping[str, Any]) -> DisputeReport:
    """Read the dispute object of a `charge.dispute.*` event.

    The provider hands dispute objects over as they came (providers/base.py keeps
    only payment intents and refunds neutral), so Stripe's field names are read here,
    in this one function; a `ProviderDispute` in providers/ would take it over."""
    return DisputeReport(
        id=str(obj["id"]),
        charge_id=_id_of(obj.get("charge")),
        payment_intent_id=_id_of(obj.get("payment_intent")),
        amount=int(obj.get("amount") or 0),
        currency=str(obj.get("currency") or "").lower(),
        reason=obj.get("reason"),
        status=str(obj.get("status") or "needs_response"),
        created=unix_time(obj.get("created")),
        evidence_due_by=unix_time((obj.get("evidence_details") or {}).get("due_by")),
    )


async def _intent_for_charge(session: AsyncSession, charge_id: str | None) -> str | None:
    """A dispute without `payment_intent` (rare: Stripe sets it for every charge made by
    a PaymentIntent): find the charge in the inbox's stored charge or payment events."""
    if not charge_id:
        return None
    return await session.scalar(
        text(
            """
            SELECT payment_intent_id FROM webhook_events
            WHERE payment_intent_id IS NOT NULL
              AND ((payload->>'object_type' = 'charge' AND payload->'object'->>'id' = :charge)
                   OR payload->'object'->>'latest_charge' = :charge)
            LIMIT 1
            """
        ),
        {"charge": charge_id},
    )


async def apply_dispute_event(session: AsyncSession, event: ProviderEvent, actor: sync.Actor) -> str:
    """Apply one `charge.dispute.*` event; returns the outcome for the inbox row."""
    if not isinstance(event.object, Mapping):
        return "ignored: not a dispute object"
    report = report_from_object(event.object)
    intent_id = event.payment_intent_id or report.payment_intent_id or await _intent_for_charge(
        session, report.charge_id)
    if intent_id is None:
        return IGNORED_NO_INTENT
    payment = await payments_repository.get_by_intent(session, intent_id, lock=True)
    if payment is None:
        return IGNORED_NO_PAYMENT
    if (bad := consistency.of_dispute(payment, intent_id=report.payment_intent_id, amount=report.amount,
                                      currency=report.currency)) is not None:
        raise consistency.InconsistentReport(payment.id, bad)
    noted = await _record(session, payment, report, event.created, actor)
    moved = await settle_payment(session, payment, actor)
    log.info("dispute.applied", dispute=report.id, payment_id=str(payment.id), status=report.status,
             recorded=noted, payment_status=payment.status)
    return f"applied: {noted}{'; ' + moved if moved else ''}"


async def _record(
    session: AsyncSession, payment: Payment, report: DisputeReport, seen_at: datetime, actor: sync.Actor
) -> str:
    """Upsert the row (the caller holds the payment's lock, which serialises its events)."""
    row = await session.scalar(select(Dispute).where(Dispute.provider_dispute_id == report.id))
    now = datetime.now(UTC)
    closed = report.status in CLOSED
    if row is None:
        session.add(row := Dispute(
            account_id=payment.account_id, payment_id=payment.id, provider_dispute_id=report.id,
            charge_id=report.charge_id, amount=report.amount, currency=report.currency or payment.currency,
            reason=report.reason, status=report.status, outcome=CLOSED.get(report.status),
            evidence_due_by=report.evidence_due_by, created_at=report.created or seen_at,
            closed_at=seen_at if closed else None, updated_at=now,
        ))
        await session.flush()
        _audit(session, payment, report, "dispute.opened", None, actor)
        _emit(session, row, "dispute.created")
        if closed:
            _audit(session, payment, report, "dispute.closed", None, actor)
            _emit(session, row, "dispute.closed")
        return f"dispute {report.status}"
    if row.status in CLOSED or rank(report.status) < rank(row.status):
        return f"dispute stays {row.status} ({report.status} reported)"
    before = row.status
    row.status = report.status
    row.amount = report.amount
    row.reason = report.reason or row.reason
    row.evidence_due_by = report.evidence_due_by or row.evidence_due_by
    if closed:
        row.outcome = CLOSED[report.status]
        row.closed_at = seen_at
    row.updated_at = now
    await session.flush()
    if closed:
        _audit(session, payment, report, "dispute.closed", before, actor)
        _emit(session, row, "dispute.closed")
    elif before != row.status:
        _audit(session, payment, report, "dispute.status_changed", before, actor)
    return f"dispute {report.status}"


def _emit(session: AsyncSession, dispute: Dispute, kind: str) -> None:
    """The merchant's webhook about the dispute, as it now stands."""
    outbound.emit(session, kind, account_id=dispute.account_id, object_type="dispute", object_id=dispute.id,
                  payload=present_dispute(dispute).model_dump(mode="json"))


def _audit(session: AsyncSession, payment: Payment, report: DisputeReport, action: str, before: str | None,
           actor: sync.Actor) -> None:
    audit.record(session, action, account_id=payment.account_id, object_type="dispute", object_id=report.id,
                 actor=actor.audit(), changes={"payment_id": (None, payment.id), "status": (before, report.status),
                                               "outcome": (None, CLOSED.get(report.status)),
                                               "amount": (None, report.amount)})


async def refund_implied_status(session: AsyncSession, payment: Payment) -> PaymentStatus:
    """Where a payment whose disputes all closed in its favour belongs (the same rule
    as refunds.service.settle_payment)."""
    refunded = await refunds_repository.accepted_total(session, payment.id)
    if refunded <= 0:
        return PaymentStatus.succeeded
    if refunded >= payment.amount_received:
        return PaymentStatus.refunded
    return PaymentStatus.partially_refunded


async def settle_payment(session: AsyncSession, payment: Payment, actor: sync.Actor) -> str | None:
    """Move the payment to what its disputes imply; returns what happened, or None."""
    disputes = await for_payment_in(session, payment.id)
    current = PaymentStatus(payment.status)
    held = any(d.outcome != WON for d in disputes)  # open (no outcome yet) or lost
    if held:
        target = PaymentStatus.disputed
    elif current is PaymentStatus.disputed:
        target = await refund_implied_status(session, payment)
    else:
        return None
    if target is current:
        return None
    if can_move(current, target):
        sync.move(session, payment, target, actor)
        return f"payment {current.value} -> {target.value}"
    if current not in CHARGE_FINAL:
        # Captured at Stripe (disputes need a captured charge), not yet here: retry later.
        raise DisputeNotYetApplicable(f"payment {payment.id} is {current.value}")
    log.warning("dispute.status_not_moved", payment_id=str(payment.id), current=current.value,
                implied=target.value)
    return f"payment stays {current.value}"


async def for_payment_in(session: AsyncSession, payment_id: uuid.UUID) -> Sequence[Dispute]:
    rows = await session.scalars(
        select(Dispute).where(Dispute.payment_id == payment_id).order_by(Dispute.created_at, Dispute.id)
    )
    return rows.all()


__all__ = ["LOST", "WON", "DisputeNotYetApplicable", "DisputeReport", "apply_dispute_event",
           "report_from_object", "settle_payment"]
