"""The dispute object in API responses (`disputes` in GET /api/payments/{id}), an
added field API.md allows: amounts as decimal strings, statuses as Stripe names them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from paymentd.disputes.models import Dispute
from paymentd.money import Money


class DisputeOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: str
    currency: str
    reason: str | None
    # Stripe's dispute status: warning_needs_response, warning_under_review,
    # warning_closed, needs_response, under_review, won, lost, prevented.
    status: str
    # won | lost once closed, else null.
    outcome: str | None
    evidence_due_by: datetime | None
    created_at: datetime
    closed_at: datetime | None


def present_dispute(dispute: Dispute) -> DisputeOut:
    return DisputeOut(
        id=dispute.id,
        payment_id=dispute.payment_id,
        amount=Money.from_minor(dispute.amount, dispute.currency).to_api(),
        currency=dispute.currency,
        reason=dispute.reason,
        status=dispute.status,
        outcome=dispute.outcome,
        evidence_due_by=dispute.evidence_due_by,
        created_at=dispute.created_at,
        closed_at=dispute.closed_at,
    )
