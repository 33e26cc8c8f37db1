"""Opening and closing a payment's manual reviews: the one writer of `reviews` rows and of
the payment's `review` (what API.md shows), so the two never disagree.

A review is opened by paymentd's rules (`source` rule) or by the processor's (`source`
radar), at most once per payment and source however often it is asked for (a retried
request, a repeated event, the confirm answer and the webhook both reporting it). Each
change writes its audit entry in the caller's transaction. The caller holds the
payment's row lock, as for every change of a payment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit, outbound
from paymentd.db import driver_of
from paymentd.fraud import settings as fraud_settings
from paymentd.fraud.models import APPROVED, DENIED, OPEN, Review
from paymentd.logs import log
from paymentd.payments.models import Payment
from paymentd.payments.states import PaymentStatus
from paymentd.providers.base import ProviderPayment

# Statuses where the money is captured: no authorization left to expire, so a review
# opened there gets no deadline (it waits for a person).
CAPTURED = frozenset({PaymentStatus.succeeded, PaymentStatus.partially_refunded, PaymentStatus.refunded,
                      PaymentStatus.disputed})
COLUMNS = "id, account_id, payment_id, source, status, reason, stripe_review_id, closed_reason, decision," \
           " deadline_at, opened_at, closed_at"
Source = Literal["rule", "radar"]


async def _conn(sink: AsyncSession | asyncpg.Connection) -> asyncpg.Connection:
    """The plain-SQL connection of the caller's transaction (an ORM session's flushed first:
    the payment it holds may not be written yet)."""
    if isinstance(sink, AsyncSession):
        await sink.flush()
        return await driver_of(sink)
    return sink


def _row(record: asyncpg.Record) -> Review:
    return Review(**dict(record))


async def open_review(
    sink: AsyncSession | asyncpg.Connection,
    *,
    payment: Payment,
    reason: str,
    source: Source,
    stripe_review_id: str | None = None,
    actor: audit.Actor | None = None,
) -> Review:
    """The payment's open review from `source`, opened now unless it exists (idempotent per
    payment and source: the existing one is returned, whatever its status). The payment
    row must be written already in this transaction (its lock held); `payment.review` is
    updated on the object and the row alike. Audit entry `review.opened` when opened."""
    if source not in ("rule", "radar"):
        raise ValueError(f"unknown review source {source!r}")
    conn = await _conn(sink)
    deadline = None
    if PaymentStatus(payment.status) not in CAPTURED:
        hours = await fraud_settings.review_deadline_hours(conn, payment.account_id)
        deadline = datetime.now(UTC) + timedelta(hours=hours)
    record = await conn.fetchrow(
        f"INSERT INTO reviews (account_id, payment_id, source, reason, stripe_review_id, deadline_at)"
        f" VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_id, source) DO NOTHING RETURNING {COLUMNS}",
        payment.account_id, payment.id, source, reason[:200], stripe_review_id, deadline,
    )
    if record is None:
        existing = _row(await conn.fetchrow(
            f"SELECT {COLUMNS} FROM reviews WHERE payment_id = $1 AND source = $2", payment.id, source))
        if stripe_review_id and existing.stripe_review_id is None:
            await conn.execute("UPDATE reviews SET stripe_review_id = $2 WHERE id = $1", existing.id, stripe_review_id)
            existing.stripe_review_id = stripe_review_id
        return existing
    review = _row(record)
    audit.record(conn, "review.opened", account_id=payment.account_id, object_type="review", object_id=review.id,
                 actor=actor, changes={"payment_id": (None, payment.id), "source": (None, source),
                                       "status": (None, OPEN), "reason": (None, review.reason),
                                       "stripe_review_id": (None, stripe_review_id),
                                       "deadline_at": (None, deadline)})
    _emit(sink, "review.opened", review)
    await mirror(conn, payment)
    log.info("review.opened", review_id=str(review.id), payment_id=str(payment.id), source=source)
    return review


async def close(
    sink: AsyncSession | asyncpg.Connection,
    review: Review,
    *,
    payment: Payment,
    status: Literal["approved", "denied"],
    closed_reason: str,
    actor: audit.Actor | None = None,
) -> bool:
    """Close an open review (False, nothing done, when it is closed already). Audit
    entry `review.approved` or `review.denied`, and `review.closed` for the close itself."""
    if status not in (APPROVED, DENIED):
        raise ValueError(f"a review closes approved or denied, not {status!r}")
    conn = await _conn(sink)
    closed_at = await conn.fetchval(
        "UPDATE reviews SET status = $2, closed_reason = $3, closed_at = clock_timestamp()"
        " WHERE id = $1 AND status = 'open' RETURNING closed_at", review.id, status, closed_reason[:100])
    if closed_at is None:
        return False
    review.status, review.closed_reason, review.closed_at = status, closed_reason[:100], closed_at
    changes = {"status": (OPEN, status), "closed_reason": (None, review.closed_reason),
               "payment_id": (payment.id, payment.id)}
    audit.record(conn, f"review.{status}", account_id=review.account_id, object_type="review",
                 object_id=review.id, actor=actor, changes=changes)
    audit.record(conn, "review.closed", account_id=review.account_id, object_type="review",
                 object_id=review.id, actor=actor, changes=changes)
    _emit(sink, "review.closed", review)
    await mirror(conn, payment)
    log.info("review.closed", review_id=str(review.id), payment_id=str(payment.id), status=status,
             closed_reason=closed_reason)
    return True


async def of_payment(sink: AsyncSession | asyncpg.Connection, payment_id: uuid.UUID) -> list[Review]:
    """The payment's reviews, open ones first."""
    conn = await _conn(sink)
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM reviews WHERE payment_id = $1"
                            " ORDER BY status = 'open' DESC, opened_at DESC, id DESC", payment_id)
    return [_row(r) for r in rows]


async def by_processor_id(sink: AsyncSession | asyncpg.Connection, stripe_review_id: str) -> Review | None:
    conn = await _conn(sink)
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM reviews WHERE stripe_review_id = $1", stripe_review_id)
    return _row(row) if row is not None else None


async def mirror(conn: asyncpg.Connection, payment: Payment) -> None:
    """The payment's `review` as API.md shows it: its open review, else the latest one."""
    reviews = await of_payment(conn, payment.id)
    payment.review = present(reviews[0]) if reviews else None
    await conn.execute("UPDATE payments SET review = $2::jsonb WHERE id = $1", payment.id,
                       _json(payment.review))


def _emit(sink: AsyncSession | asyncpg.Connection, kind: str, review: Review) -> None:
    """The merchant's webhook about the review, as GET /api/reviews lists it."""
    outbound.emit(sink, kind, account_id=review.account_id, object_type="review", object_id=review.id,
                  payload={**present(review), "payment_id": str(review.payment_id)})


def present(review: Review) -> dict[str, Any]:
    """API.md's `review` of a payment, plus where it came from and why it closed."""
    return {
        "id": str(review.id),
        "status": review.status,
        "reason": review.reason,
        "source": review.source,
        "opened_at": _time(review.opened_at),
        "closed_at": _time(review.closed_at),
        "closed_reason": review.closed_reason,
        "deadline_at": _time(review.deadline_at),
    }


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _json(value: Mapping[str, Any] | None) -> str | None:
    import json

    return json.dumps(value) if value is not None else None


async def note_processor_review(
    sink: AsyncSession | asyncpg.Connection, payment: Payment, intent: ProviderPayment, actor: audit.Actor | None
) -> Review | None:
    """The processor put the payment in its manual review queue (its report names a
    review): the same review opens here, once, in the shared list."""
    if intent.review is None:
        return None
    reason = (intent.risk.reason if intent.risk and intent.risk.reason else None) or "processor_review"
    return await open_review(sink, payment=payment, reason=reason, source="radar", stripe_review_id=intent.review,
                             actor=actor)
