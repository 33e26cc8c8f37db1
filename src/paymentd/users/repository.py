"""User queries, scoped to an account: another account's user is simply absent."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.users.models import User

# Built once: every payment created looks its user up.
_OF_ACCOUNT = select(User).where(User.id == bindparam("user_id"), User.account_id == bindparam("account_id"))


async def get(session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    return await session.scalar(_OF_ACCOUNT, {"user_id": user_id, "account_id": account_id})


@dataclass(frozen=True)
class Payer:
    user_id: uuid.UUID
    customer: str | None  # the user's Stripe customer, once a method was saved


async def payer(conn: asyncpg.Connection, account_id: uuid.UUID, user_id: uuid.UUID) -> Payer | None:
    """What creating a payment needs of its user, in plain SQL (the payment hot path, see payments/sql.py)."""
    row = await conn.fetchrow(
        "SELECT id, provider_customer_id FROM users WHERE id = $1 AND account_id = $2", user_id, account_id
    )
    return Payer(row["id"], row["provider_customer_id"]) if row is not None else None
