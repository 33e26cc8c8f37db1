"""Rows of fraud handling: a payment's manual reviews and the issuers' early fraud warnings.

A review is opened by paymentd's own rules (`source` rule) or by the processor's
(`source` radar, with its review id) and decided once: approved (the payment is
captured) or denied (canceled, or refunded as fraudulent when already captured), by a
person through the API, by the processor (its review closed there), or by the
deadline job. One review per payment and source, so every opener is idempotent.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base

OPEN, APPROVED, DENIED = "open", "approved", "denied"
REVIEW_STATUSES = (OPEN, APPROVED, DENIED)
SOURCES = ("rule", "radar")


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("payment_id", "source", name="reviews_one_per_payment_and_source"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'open'"))
    reason: Mapped[str] = mapped_column(Text)
    # The processor's review (Radar's `prv_...`), for source radar.
    stripe_review_id: Mapped[str | None] = mapped_column(Text, unique=True)
    # Why it closed: approved, denied, deadline_approved, deadline_denied, or the
    # processor's own closing (processor_approved, processor_refunded, ...).
    closed_reason: Mapped[str | None] = mapped_column(Text)
    # The decision under way (approve | deny) while the processor moves the money; claimed
    # first, so two deciders (a person, the deadline) can never both act.
    decision: Mapped[str | None] = mapped_column(Text)
    # When the deadline job decides it if nobody has (NULL: no authorization to lose).
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class EarlyFraudWarning(Base):
    __tablename__ = "early_fraud_warnings"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    # The processor's id (`issfr_...`): every event about one warning updates one row.
    provider_warning_id: Mapped[str] = mapped_column(Text, unique=True)
    fraud_type: Mapped[str] = mapped_column(Text)
    actionable: Mapped[bool] = mapped_column(Boolean)
    # The refund paymentd made for it (auto refund), set once: never a second.
    refund_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("refunds.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
