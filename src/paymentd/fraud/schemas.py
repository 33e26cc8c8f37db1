"""Response bodies of fraud handling (API.md "Fraud"): a payment's `risk` and `review`,
and the review list."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from paymentd.fraud.models import EarlyFraudWarning
from paymentd.payments.models import Payment


class RiskOut(BaseModel):
    level: Literal["normal", "elevated", "highest", "not_assessed", "unknown"]
    score: int | None = Field(None, ge=0, le=100)
    outcome: Literal["authorized", "manual_review", "issuer_declined", "blocked"] | None
    rules: list[str] = Field(description="Ids of paymentd's own fraud rules that fired")


class ReviewOut(BaseModel):
    id: uuid.UUID
    status: Literal["open", "approved", "denied"]
    reason: str
    opened_at: datetime
    closed_at: datetime | None
    # Added to API.md's object: who opened it, why it closed, when the deadline decides it.
    source: Literal["rule", "radar"]
    closed_reason: str | None = None
    deadline_at: datetime | None = None


class ReviewListItem(ReviewOut):
    payment_id: uuid.UUID


class ReviewPage(BaseModel):
    data: list[ReviewListItem]
    has_more: bool
    next_cursor: str | None


class EarlyFraudWarningOut(BaseModel):
    id: str = Field(description="The processor's id of the warning")
    fraud_type: str
    actionable: bool
    created_at: datetime
    # paymentd's refund made for it, when the account refunds warnings automatically.
    refund_id: uuid.UUID | None = None


def present_risk(payment: Payment) -> RiskOut | None:
    """API.md's `risk`: null before any attempt (and before any rule looked at it)."""
    rules = list(payment.risk_rules or [])
    if payment.risk_level is None and not payment.attempt_count and not rules:
        return None
    # No verdict from the processor (yet, or ever: blocked before it): not assessed.
    return RiskOut(level=payment.risk_level or "not_assessed", score=payment.risk_score,
                   outcome=payment.risk_outcome, rules=rules)


def present_warning(warning: EarlyFraudWarning) -> EarlyFraudWarningOut:
    return EarlyFraudWarningOut(id=warning.provider_warning_id, fraud_type=warning.fraud_type,
                                actionable=warning.actionable, created_at=warning.created_at,
                                refund_id=warning.refund_id)


def present_review(payment: Payment) -> ReviewOut | None:
    mirrored: dict[str, Any] | None = payment.review
    return ReviewOut.model_validate(mirrored) if mirrored else None
