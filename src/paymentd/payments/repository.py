"""Payment queries. Every read is scoped to an account: another account's row is simply absent."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.errors import InvalidRequest
from paymentd.instants import utc_instant
from paymentd.payments.models import Payment, PaymentAttempt

# Attempt outcomes that mean "Stripe may or may not have acted yet".
OPEN_OUTCOMES = ("pending", "unknown")


# Built once: composing a query and computing its cache key on every call is not free.
# (The busiest reads and writes are plain SQL in sql.py.)
_BY_ID = select(Payment).where(Payment.id == bindparam("payment_id"))
_BY_ACCOUNT_AND_ID = _BY_ID.where(Payment.account_id == bindparam("account_id"))
_BY_INTENT = select(Payment).where(Payment.stripe_payment_intent_id == bindparam("intent_id"))
_ATTEMPT = select(PaymentAttempt).where(
    PaymentAttempt.payment_id == bindparam("payment_id"), PaymentAttempt.number == bindparam("number")
)
_LOCKED = {query: query.with_for_update() for query in (_BY_ID, _BY_ACCOUNT_AND_ID, _BY_INTENT)}


def _maybe_locked(query: Select, lock: bool) -> Select:
    return _LOCKED[query] if lock else query


async def get(session: AsyncSession, account_id: uuid.UUID, payment_id: uuid.UUID, *, lock: bool = False) -> Payment | None:
    query = _maybe_locked(_BY_ACCOUNT_AND_ID, lock)
    return await session.scalar(query, {"payment_id": payment_id, "account_id": account_id})


async def get_by_id(session: AsyncSession, payment_id: uuid.UUID, *, lock: bool = False) -> Payment | None:
    """Unscoped: for work that is not a caller's request (declines recorded, webhooks, reconciler)."""
    return await session.scalar(_maybe_locked(_BY_ID, lock), {"payment_id": payment_id})


async def get_by_intent(session: AsyncSession, intent_id: str, *, lock: bool = False) -> Payment | None:
    return await session.scalar(_maybe_locked(_BY_INTENT, lock), {"intent_id": intent_id})


async def attempt(session: AsyncSession, payment_id: uuid.UUID, number: int) -> PaymentAttempt:
    return await session.scalar(_ATTEMPT, {"payment_id": payment_id, "number": number})


@dataclass(frozen=True)
class HistoryFilter:
    user_id: uuid.UUID | None = None
    statuses: tuple[str, ...] = ()
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    # Any of these users (the dashboard's search by email: several users may share one).
    user_ids: tuple[uuid.UUID, ...] = ()


def encode_cursor(payment: Payment) -> str:
    raw = json.dumps({"t": payment.created_at.isoformat(), "id": str(payment.id)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) an `encode_cursor` cursor holds, or a 400: anything else a
    caller sends (bad base64, other JSON, wrong types, extreme or naive times) is refused
    here, before it can reach a query."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, dict) or not isinstance(raw.get("t"), str) or not isinstance(raw.get("id"), str):
            raise ValueError("not a cursor")
        at, last_id = datetime.fromisoformat(raw["t"]), uuid.UUID(raw["id"])
    except (ValueError, RecursionError) as error:  # binascii and Unicode errors are ValueErrors
        raise _bad_cursor() from error
    return utc_instant(at, "cursor", naive_is_utc=False, message=_BAD_CURSOR), last_id


_BAD_CURSOR = "The cursor is not one this API returned."


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(_BAD_CURSOR, code="parameter_invalid", param="cursor")


async def history(
    session: AsyncSession, account_id: uuid.UUID, where: HistoryFilter, *, limit: int, cursor: str | None
) -> tuple[Sequence[Payment], bool]:
    """Newest first, keyset-paginated on (created_at, id): rows inserted while a
    client pages land before its cursor, so pages never repeat or skip a row."""
    query = select(Payment).where(Payment.account_id == account_id)
    if where.user_id:
        query = query.where(Payment.user_id == where.user_id)
    if where.user_ids:
        query = query.where(Payment.user_id.in_(where.user_ids))
    if where.statuses:
        query = query.where(Payment.status.in_(where.statuses))
    if where.created_gte:
        query = query.where(Payment.created_at >= where.created_gte)
    if where.created_lt:
        query = query.where(Payment.created_at < where.created_lt)
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(or_(Payment.created_at < at, and_(Payment.created_at == at, Payment.id < last_id)))
    rows = (await session.scalars(query.order_by(Payment.created_at.desc(), Payment.id.desc()).limit(limit + 1))).all()
    return rows[:limit], len(rows) > limit
