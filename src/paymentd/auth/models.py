"""Account and API-key rows. A key's secret is never stored: only its SHA-256."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, BigInteger, Boolean, DateTime, ForeignKey, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from paymentd.db import Base


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    name: Mapped[str] = mapped_column(Text, unique=True)
    # Merchant details printed on receipts (display name, address, support email...).
    details: Mapped[dict] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    # Last receipt number handed out; incremented under the row lock so numbers never repeat.
    receipt_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    # Inbound requests per second; None: the configured default; 0: no limit (auth/throttle.py).
    rate_limit_rps: Mapped[int | None] = mapped_column(Integer)
    # Fraud settings (fraud/settings.py): refund an actionable early fraud warning's payment
    # at once; how long a review may wait for a person, and what the deadline then does
    # (NULL: the configured default).
    auto_refund_early_fraud_warnings: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    review_deadline_hours: Mapped[int | None] = mapped_column(Integer)
    review_deadline_action: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    prefix: Mapped[str] = mapped_column(Text, unique=True)
    secret_hash: Mapped[str] = mapped_column(Text)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Coarse on purpose: flushed at most once a minute per key (auth/usage.py).
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
