"""The webhook inbox row: one per Stripe event id, however often it is delivered.

Rows are written by the webhook route (and by the reconciler for events it finds by
listing Stripe's events) and marked processed by the job that applies them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    payment_intent_id: Mapped[str | None] = mapped_column(Text)
    # None once purged (jobs/cleanup.py): the row stays so a redelivery is still a duplicate.
    payload: Mapped[dict | None] = mapped_column(JSONB)
    source: Mapped[str] = mapped_column(Text, server_default=text("'webhook'"))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
