"""Refund queries. Callers hold the payment's row lock whenever they read sums to decide."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.refunds.models import HOLDING, PENDING, REQUIRES_ACTION, Refund


async def for_payment(session: AsyncSession, payment_id: uuid.UUID) -> Sequence[Refund]:
    rows = await session.scalars(
        select(Refund).where(Refund.payment_id == payment_id).order_by(Refund.created_at, Refund.id)
    )
    return rows.all()


async def reserved_total(session: AsyncSession, payment_id: uuid.UUID) -> int:
    """Minor units no longer refundable: every refund not failed or canceled,
    including those whose Stripe call is still in flight."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status.in_(HOLDING)
        )
    )
    return int(total or 0)


async def accepted_total(session: AsyncSession, payment_id: uuid.UUID) -> int:
    """What Stripe has accepted and not failed: Stripe's own `charge.amount_refunded`."""
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.payment_id == payment_id, Refund.status.in_(HOLDING), Refund.provider_refund_id.is_not(None)
        )
    )
    return int(total or 0)


async def by_provider_id(session: AsyncSession, provider_refund_id: str) -> Refund | None:
    return await session.scalar(select(Refund).where(Refund.provider_refund_id == provider_refund_id))


async def unsent_exists(session: AsyncSession, payment_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(Refund.id).where(
            Refund.payment_id == payment_id, Refund.provider_refund_id.is_(None), Refund.status == PENDING
        ).limit(1)
    )
    return found is not None


async def unsettled(session: AsyncSession, before: datetime, limit: int) -> Sequence[Refund]:
    """Refunds still pending (or unsent) since `before`: for the reconciler."""
    rows = await session.scalars(
        select(Refund)
        .where(Refund.status.in_((PENDING, REQUIRES_ACTION)), Refund.updated_at < before)
        .order_by(Refund.updated_at)
        .limit(limit)
    )
    return rows.all()
