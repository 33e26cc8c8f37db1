"""User queries, scoped to an account: another account's user is simply absent."""

from __future__ import annotations

import uuid

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd.users.models import User

# Built once: every payment created looks its user up.
_OF_ACCOUNT = select(User).where(User.id == bindparam("user_id"), User.account_id == bindparam("account_id"))


async def get(session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
    return await session.scalar(_OF_ACCOUNT, {"user_id": user_id, "account_id": account_id})
