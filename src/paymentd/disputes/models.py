"""The dispute row: one per Stripe dispute, kept in line with its events.

A payment can be disputed and the dispute closed in its favour (won, or an inquiry
closed), or lost; the row keeps the outcome after the payment's status moved on.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base

# Stripe's dispute statuses in the order a dispute can pass through them (an inquiry,
# `warning_*`, may escalate to a chargeback); every closed status comes last and is final.
OPEN_ORDER = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
WON, LOST = "won", "lost"
# Closed statuses and the outcome each means for the merchant. `warning_closed` (an
# inquiry that did not escalate) and `prevented` leave the money with the merchant.
CLOSED = {"won": WON, "warning_closed": WON, "prevented": WON, "lost": LOST}


def rank(status: str) -> int:
    """Position of a status in a dispute's life; unknown statuses rank as the first open one."""
    if status in CLOSED:
        return len(OPEN_ORDER)
    return OPEN_ORDER.index(status) if status in OPEN_ORDER else 0


class Dispute(Base):
    __tablename__ = "disputes"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    provider_dispute_id: Mapped[str] = mapped_column(Text, unique=True)
    charge_id: Mapped[str | None] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    # won | lost once closed, else NULL.
    outcome: Mapped[str | None] = mapped_column(Text)
    evidence_due_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the dispute was opened (Stripe's `created`), and when it closed (the event's time).
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
