"""Request and response bodies of POST /api/payments/refund (API.md's refund object)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from paymentd.money import Money
from paymentd.refunds.models import Refund
from paymentd.schemas import Amount, RequestModel


class RefundCreate(RequestModel):
    payment_id: uuid.UUID
    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None


class RefundOut(BaseModel):
    id: uuid.UUID
    payment_id: uuid.UUID
    amount: str
    currency: str
    status: Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
    reason: str | None
    failure_reason: str | None
    created_at: datetime


def present_refund(refund: Refund) -> RefundOut:
    return RefundOut(
        id=refund.id,
        payment_id=refund.payment_id,
        amount=Money.from_minor(refund.amount, refund.currency).to_api(),
        currency=refund.currency,
        status=refund.status,
        reason=refund.reason,
        failure_reason=refund.failure_reason,
        created_at=refund.created_at,
    )
