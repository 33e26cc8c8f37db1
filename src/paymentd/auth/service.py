"""Accounts and keys: create, revoke, authenticate. Used by the CLI and the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit
from paymentd.auth import keys
from paymentd.auth.keys import Scope
from paymentd.auth.models import Account, ApiKey


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account a key belongs to, and what it may do."""

    account_id: uuid.UUID
    api_key_id: uuid.UUID
    scopes: frozenset[str]

    def allows(self, scope: Scope) -> bool:
        return scope.value in self.scopes or Scope.admin.value in self.scopes


class UnknownAccount(LookupError):
    pass


async def create_account(session: AsyncSession, name: str, details: dict | None = None) -> Account:
    account = Account(name=name, details=details or {"display_name": name})
    session.add(account)
    await session.flush()
    audit.record(session, "account.created", account_id=account.id, object_type="account", object_id=account.id,
                 changes={"name": (None, name)})
    return account


async def get_or_create_account(session: AsyncSession, name: str) -> Account:
    account = await session.scalar(select(Account).where(Account.name == name))
    return account or await create_account(session, name)


async def create_key(
    session: AsyncSession, account_name: str, scopes: Iterable[Scope], *, name: str | None = None
) -> tuple[ApiKey, str]:
    """Returns the row and the secret; the secret exists nowhere else after this."""
    account = await session.scalar(select(Account).where(Account.name == account_name))
    if account is None:
        raise UnknownAccount(account_name)
    new = keys.generate()
    row = ApiKey(
        account_id=account.id,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        scopes=sorted({Scope(s).value for s in scopes}),
        name=name,
    )
    session.add(row)
    await session.flush()
    audit.record(session, "api_key.created", account_id=account.id, object_type="api_key", object_id=row.id,
                 changes={"prefix": (None, row.prefix), "scopes": (None, row.scopes)})
    return row, new.secret


async def revoke_key(session: AsyncSession, prefix_or_id: str) -> bool:
    condition = ApiKey.prefix == prefix_or_id
    try:
        condition = condition | (ApiKey.id == uuid.UUID(prefix_or_id))
    except ValueError:
        pass
    revoked = (await session.execute(
        update(ApiKey).where(condition, ApiKey.revoked_at.is_(None)).values(revoked_at=func.now())
        .returning(ApiKey.id, ApiKey.account_id, ApiKey.prefix)
    )).all()
    for key_id, account_id, prefix in revoked:
        audit.record(session, "api_key.revoked", account_id=account_id, object_type="api_key", object_id=key_id,
                     changes={"revoked": (False, True)})
    return bool(revoked)


async def authenticate(session: AsyncSession, key: str) -> Principal | None:
    """The principal for a live key, or None (unknown, malformed and revoked look alike)."""
    prefix = keys.prefix_of(key)
    if prefix is None:
        return None
    row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or row.revoked_at is not None or not keys.matches(key, row.secret_hash):
        return None
    return Principal(account_id=row.account_id, api_key_id=row.id, scopes=frozenset(row.scopes))
