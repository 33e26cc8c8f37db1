"""Refund rows. A row is written `pending` before Stripe is called: its amount is
reserved against the payment from that moment, so concurrent refunds can never
add up to more than was captured. `failed` and `canceled` give the amount back.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base

# Refund statuses, as Stripe names them.
PENDING = "pending"
REQUIRES_ACTION = "requires_action"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
STATUSES = (PENDING, REQUIRES_ACTION, SUCCEEDED, FAILED, CANCELED)

# Statuses whose amount is no longer refundable (reserved, on its way, or done).
HOLDING = (PENDING, REQUIRES_ACTION, SUCCEEDED)

# Stripe can move a refund only this way: succeeded -> failed happens when the
# money cannot reach the customer (an expired card), days later.
MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({REQUIRES_ACTION, SUCCEEDED, FAILED, CANCELED}),
    REQUIRES_ACTION: frozenset({PENDING, SUCCEEDED, FAILED, CANCELED}),
    SUCCEEDED: frozenset({FAILED}),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("payments.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    reason: Mapped[str | None] = mapped_column(Text)
    provider_refund_id: Mapped[str | None] = mapped_column(Text, unique=True)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    request_seed: Mapped[uuid.UUID | None] = mapped_column(UUID)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
