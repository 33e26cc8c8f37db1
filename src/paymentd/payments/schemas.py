"""Request and response bodies of /api/payments (API.md's payment object)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, IPvAnyAddress

from paymentd.disputes.schemas import DisputeOut
from paymentd.fraud.schemas import EarlyFraudWarningOut, ReviewOut, RiskOut, present_review, present_risk
from paymentd.money import Money
from paymentd.payments.models import Payment
from paymentd.schemas import (
    Amount,
    Currency,
    Email,
    Metadata,
    PaymentMethodId,
    RequestModel,
)

PaymentMethodType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,39}$", description="A Stripe payment method type")]
Description = Annotated[str, Field(max_length=1000)]


class PaymentCreate(RequestModel):
    user_id: uuid.UUID
    amount: Amount
    currency: Currency = "usd"
    description: Description | None = None
    payment_method_types: Annotated[list[PaymentMethodType], Field(min_length=1, max_length=20)] = ["card"]
    payment_method: PaymentMethodId | None = None
    capture_method: Literal["automatic", "manual"] = "automatic"
    receipt_email: Email | None = None
    metadata: Metadata = {}


class OnlineAcceptance(RequestModel):
    ip_address: IPvAnyAddress = Field(description="The customer's IP address when they accepted the mandate")
    user_agent: Annotated[str, Field(min_length=1, max_length=5000)] = Field(
        description="The customer's browser or app (User-Agent) when they accepted the mandate")


class CustomerAcceptance(RequestModel):
    type: Literal["online"]
    online: OnlineAcceptance


class MandateData(RequestModel):
    """Stripe's `mandate_data`: the customer's acceptance of a debit mandate, which a bank
    debit (SEPA Direct Debit, BACS, BECS, ACSS, US bank accounts) confirmed from a server needs."""

    customer_acceptance: CustomerAcceptance


class PaymentConfirm(RequestModel):
    payment_id: uuid.UUID
    payment_method: PaymentMethodId | None = None
    return_url: Annotated[str, Field(pattern=r"^https?://", max_length=2000)] | None = None
    # Added to API.md's confirm, in Stripe's own shape (online acceptance only); passed to
    # Stripe with the confirmation, never stored.
    mandate_data: MandateData | None = None
    # The payer's device (API.md "Fraud"): read by the fraud rules (stored only sealed, in
    # the decision), and Stripe's mandate acceptance for a payment that can only be a bank debit.
    ip_address: IPvAnyAddress | None = Field(None, description="The payer's IP address")
    user_agent: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="The payer's browser or app (User-Agent)")


class PaymentCapture(RequestModel):
    payment_id: uuid.UUID
    amount: Amount | None = None


class PaymentCancel(RequestModel):
    payment_id: uuid.UUID
    reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None


class PaymentEventOut(BaseModel):
    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str
    at: datetime
    source: Literal["api", "webhook", "reconciler"]

    model_config = {"populate_by_name": True}


class PaymentOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    amount: str
    currency: str
    status: str
    amount_refunded: str
    amount_capturable: str
    amount_received: str
    payment_method_types: list[str]
    payment_method: str | None
    capture_method: str
    description: str | None
    metadata: dict[str, str]
    receipt_email: str | None
    client_secret: str | None
    stripe_payment_intent_id: str | None
    next_action: dict[str, Any] | None
    last_payment_error: dict[str, Any] | None
    receipt_number: str | None
    # API.md "Fraud": the fraud verdict (null before any attempt) and the manual review.
    risk: RiskOut | None = None
    review: ReviewOut | None = None
    created_at: datetime
    updated_at: datetime


class PaymentDetailOut(PaymentOut):
    refunds: list[dict[str, Any]]
    events: list[PaymentEventOut]
    # Added to API.md's object: the payment's disputes (chargebacks), oldest first.
    disputes: list[DisputeOut] = []
    # Added to API.md's object: issuers' early fraud warnings about it, oldest first.
    early_fraud_warnings: list[EarlyFraudWarningOut] = []


class PaymentPage(BaseModel):
    data: list[PaymentOut]
    has_more: bool
    next_cursor: str | None


def present_payment(payment: Payment) -> PaymentOut:
    """The payment as GET shows it (without its lists), for answers and outbound events."""
    def money(minor: int) -> str:
        return Money.from_minor(minor, payment.currency).to_api()

    return PaymentOut(
        id=payment.id,
        user_id=payment.user_id,
        amount=money(payment.amount),
        currency=payment.currency,
        status=payment.status,
        amount_refunded=money(payment.amount_refunded),
        amount_capturable=money(payment.amount_capturable),
        amount_received=money(payment.amount_received),
        payment_method_types=payment.payment_method_types,
        payment_method=payment.payment_method,
        capture_method=payment.capture_method,
        description=payment.description,
        metadata=payment.metadata_,
        receipt_email=payment.receipt_email,
        client_secret=payment.client_secret,
        stripe_payment_intent_id=payment.stripe_payment_intent_id,
        next_action=payment.next_action,
        last_payment_error=payment.last_payment_error,
        receipt_number=payment.receipt_number,
        risk=present_risk(payment),
        review=present_review(payment),
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )
