"""Payment rows: the payment, each confirm attempt, and every status move.

Amounts are integers in minor units beside their currency. `status` is only
ever assigned through `states.transition()` (see service.py).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_refunded >= 0 AND amount_refunded <= amount", name="refunded_within_amount"),
        CheckConstraint("capture_method IN ('automatic', 'manual')", name="capture_method_valid"),
        # The status list is mirrored in the migration; states.py is the source of truth.
        Index("payments_account_created", "account_id", text("created_at DESC"), text("id DESC")),
        Index("payments_account_user_created", "account_id", "user_id", text("created_at DESC"), text("id DESC")),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text, server_default=text("'usd'"))
    status: Mapped[str] = mapped_column(Text)
    amount_capturable: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    amount_received: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    amount_refunded: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    payment_method_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    payment_method: Mapped[str | None] = mapped_column(Text)
    capture_method: Mapped[str] = mapped_column(Text, server_default=text("'automatic'"))
    description: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    receipt_email: Mapped[str | None] = mapped_column(Text)
    client_secret: Mapped[str | None] = mapped_column(Text)
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(Text, unique=True)
    next_action: Mapped[dict | None] = mapped_column(JSONB)
    last_payment_error: Mapped[dict | None] = mapped_column(JSONB)
    # Brand/last4 (or bank label) of the method that paid, for receipts.
    payment_method_details: Mapped[dict | None] = mapped_column(JSONB)
    receipt_number: Mapped[str | None] = mapped_column(Text)
    attempt_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The processor's fraud verdict on the latest attempt (API.md "Fraud": `risk`); NULL until one came.
    risk_level: Mapped[str | None] = mapped_column(Text)
    risk_score: Mapped[int | None] = mapped_column(Integer)
    risk_outcome: Mapped[str | None] = mapped_column(Text)
    # Ids of paymentd's own fraud rules that fired on it (written by the rules, fraud/).
    risk_rules: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    # The payment's review as API.md shows it ({id, status, reason, opened_at, closed_at}),
    # kept by fraud/reviews.py alone beside the `reviews` row, so no read needs a join.
    review: Mapped[dict | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())


class PaymentAttempt(Base):
    """One confirm of a payment. Its number is part of the Stripe idempotency key."""

    __tablename__ = "payment_attempts"
    __table_args__ = (UniqueConstraint("payment_id", "number"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    number: Mapped[int] = mapped_column(Integer)
    payment_method: Mapped[str | None] = mapped_column(Text)
    # pending until Stripe answers; then the outcome: succeeded, processing,
    # requires_action, requires_capture, failed (a decline), refused (Stripe refused the
    # request: an unknown or unusable payment method; no card was asked), abandoned
    # (never reached Stripe), or unknown (Stripe unreachable).
    outcome: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    error_code: Mapped[str | None] = mapped_column(Text)
    decline_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    # The processor's fraud verdict on this attempt's charge, when it reported one.
    risk_level: Mapped[str | None] = mapped_column(Text)
    risk_score: Mapped[int | None] = mapped_column(Integer)
    risk_outcome: Mapped[str | None] = mapped_column(Text)
    risk_reason: Mapped[str | None] = mapped_column(Text)
    # The Idempotency-Key seed of the request that opened it: a re-run resumes it.
    request_seed: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PaymentEvent(Base):
    """A status move, with who caused it: the audit trail of a payment's life."""

    __tablename__ = "payment_events"
    __table_args__ = (CheckConstraint("source IN ('api', 'webhook', 'reconciler')", name="source_valid"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(UUID)
    request_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
