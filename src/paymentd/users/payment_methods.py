"""A user's saved payment methods: attached to the user's Stripe customer, recorded here.

The table keeps only what may be shown again (type, brand, last 4, expiry, label),
so listing needs no Stripe call, and it says whose a method is: a payment confirmed
with another user's saved method is refused (404) before it reaches Stripe.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
from sqlalchemy import DateTime, ForeignKey, Integer, Text, func, select, text, update
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from paymentd import audit
from paymentd.auth.service import Principal
from paymentd.db import Base, Database
from paymentd.errors import Conflict, NotFound
from paymentd.logs import log
from paymentd.providers import base as provider_types
from paymentd.providers.base import PaymentMethodInfo, PaymentProvider
from paymentd.users import repository
from paymentd.users.models import User


class SavedPaymentMethod(Base):
    __tablename__ = "payment_methods"

    id: Mapped[uuid.UUID] = mapped_column(UUID, primary_key=True, server_default=text("gen_random_uuid()"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    provider_payment_method_id: Mapped[str] = mapped_column(Text, unique=True)
    type: Mapped[str] = mapped_column(Text)
    brand: Mapped[str | None] = mapped_column(Text)
    last4: Mapped[str | None] = mapped_column(Text)
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    detached_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def user_key(user_id: uuid.UUID, operation: str, *parts: object) -> str:
    """Stripe idempotency key derived from the user's id (customer, attach, detach)."""
    return ":".join(["paymentd", "user", str(user_id), operation, *map(str, parts)])


async def _user(session: AsyncSession, principal: Principal, user_id: uuid.UUID) -> User:
    user = await repository.get(session, principal.account_id, user_id)
    if user is None:
        raise NotFound("No such user.", param="id")
    return user


async def ensure_customer(database: Database, provider: PaymentProvider, user: User) -> str:
    """The user's Stripe customer, created on first need. Concurrent first calls send
    the same keyed create, so Stripe makes one customer; the first to store it wins."""
    if user.provider_customer_id:
        return user.provider_customer_id
    # The one provider-error mapping; imported late because payments.service imports this module.
    from paymentd.payments.service import translate

    try:
        customer = await provider.create_customer(
            email=user.email, name=user.name, metadata={"paymentd_user_id": str(user.id)},
            idempotency_key=user_key(user.id, "customer"),
        )
    except provider_types.ProviderError as error:
        raise translate(error) from error
    async with database.transaction() as session:
        result = await session.execute(
            update(User).where(User.id == user.id, User.provider_customer_id.is_(None))
            .values(provider_customer_id=customer)
        )
        if result.rowcount:
            audit.record(session, "user.updated", account_id=user.account_id, object_type="user", object_id=user.id,
                         changes={"provider_customer_id": (None, customer)})
        stored = await session.scalar(select(User.provider_customer_id).where(User.id == user.id))
    return stored or customer


async def save(
    database: Database, provider: PaymentProvider, principal: Principal, user_id: uuid.UUID, payment_method: str
) -> SavedPaymentMethod:
    from paymentd.payments.service import translate

    async with database.transaction() as session:
        user = await _user(session, principal, user_id)
        taken = await session.scalar(
            select(SavedPaymentMethod).where(SavedPaymentMethod.provider_payment_method_id == payment_method)
        )
    if taken is not None and taken.user_id != user.id:
        # Saved by someone else (maybe in another account): say nothing about them.
        raise Conflict("This payment method cannot be saved for this user.", code="payment_method_unavailable",
                       param="payment_method")
    customer = await ensure_customer(database, provider, user)
    try:
        info = await provider.attach_payment_method(
            payment_method, customer=customer, idempotency_key=user_key(user.id, "attach", payment_method)
        )
    except provider_types.ProviderError as error:
        raise translate(error) from error
    async with database.transaction() as session:
        values = _shown(info)
        row = await session.scalar(
            pg_insert(SavedPaymentMethod)
            .values(account_id=user.account_id, user_id=user.id, provider_payment_method_id=info.id, **values)
            .on_conflict_do_update(
                index_elements=[SavedPaymentMethod.provider_payment_method_id],
                set_={**values, "detached_at": None},
                where=SavedPaymentMethod.user_id == user.id,
            )
            .returning(SavedPaymentMethod)
        )
        if row is not None:
            audit.record(session, "payment_method.saved", account_id=row.account_id, object_type="payment_method",
                         object_id=row.provider_payment_method_id,
                         changes={"user_id": (None, row.user_id), "type": (None, row.type),
                                  "brand": (None, row.brand), "last4": (None, row.last4)})
    if row is None:
        raise Conflict("This payment method cannot be saved for this user.", code="payment_method_unavailable",
                       param="payment_method")
    log.info("payment_method.saved", user_id=str(user.id), type=row.type)
    return row


async def list_for(database: Database, principal: Principal, user_id: uuid.UUID) -> Sequence[SavedPaymentMethod]:
    async with database.transaction() as session:
        await _user(session, principal, user_id)
        rows = await session.scalars(
            select(SavedPaymentMethod)
            .where(SavedPaymentMethod.user_id == user_id, SavedPaymentMethod.detached_at.is_(None))
            .order_by(SavedPaymentMethod.created_at, SavedPaymentMethod.id)
        )
        return rows.all()


async def detach(
    database: Database, provider: PaymentProvider, principal: Principal, user_id: uuid.UUID, payment_method: str
) -> SavedPaymentMethod:
    from paymentd.payments.service import translate

    async with database.transaction() as session:
        await _user(session, principal, user_id)
        row = await _active(session, user_id, payment_method)
    if row is None:
        raise NotFound("No such payment method for this user.", param="pm_id")
    try:
        await provider.detach_payment_method(payment_method, idempotency_key=user_key(user_id, "detach", payment_method))
    except provider_types.ProviderInvalidRequest as error:
        # Already detached at Stripe (by a retry of this request, or the dashboard): fine.
        log.info("payment_method.detach_refused", code=error.code)
    except provider_types.ProviderError as error:
        raise translate(error) from error
    async with database.transaction() as session:
        row = await session.get(SavedPaymentMethod, row.id, with_for_update=True)
        if row.detached_at is None:
            row.detached_at = datetime.now(UTC)
            audit.record(session, "payment_method.removed", account_id=row.account_id, object_type="payment_method",
                         object_id=row.provider_payment_method_id,
                         changes={"user_id": (row.user_id, None), "detached_at": (None, row.detached_at)})
    return row


async def _active(session: AsyncSession, user_id: uuid.UUID, payment_method: str) -> SavedPaymentMethod | None:
    return await session.scalar(
        select(SavedPaymentMethod).where(
            SavedPaymentMethod.user_id == user_id,
            SavedPaymentMethod.provider_payment_method_id == payment_method,
            SavedPaymentMethod.detached_at.is_(None),
        )
    )


async def check_usable(conn: asyncpg.Connection, user_id: uuid.UUID, payment_method: str) -> None:
    """Confirm's guard: a method saved for another user of the account is not this
    user's to pay with (404, as if it did not exist). Unsaved one-off methods pass.
    Plain SQL: it runs in confirm's hot path (see payments/sql.py)."""
    owner = await conn.fetchval(
        "SELECT user_id FROM payment_methods WHERE provider_payment_method_id = $1 AND detached_at IS NULL",
        payment_method,
    )
    if owner is not None and owner != user_id:
        raise NotFound("No such payment method for this payment's user.", param="payment_method")


def _shown(info: PaymentMethodInfo) -> dict:
    """What is kept of a method: never more than type, brand, last 4, expiry, label."""
    card = info.card
    return {
        "type": info.type,
        "brand": card.brand if card else None,
        "last4": card.last4 if card else None,
        "exp_month": card.exp_month if card else None,
        "exp_year": card.exp_year if card else None,
        "label": info.label,
    }
