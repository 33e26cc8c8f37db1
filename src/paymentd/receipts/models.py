"""The receipt-email outbox: one row per payment whose receipt must be emailed.

The row is written in the same transaction that moves the payment to `succeeded`
(see `outbox.note_status_move`), so a receipt is never forgotten by a crash, and
the sender retries from it with backoff until it is sent or gives up.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base


class ReceiptEmail(Base):
    __tablename__ = "receipt_emails"

    payment_id: Mapped[uuid.UUID] = mapped_column(UUID, ForeignKey("payments.id"), primary_key=True)
    recipient: Mapped[str] = mapped_column(Text)
    # queued -> sent | skipped (SMTP not configured) | failed (retries ran out)
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
