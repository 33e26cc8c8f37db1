"""Accounts and keys: create, list, revoke, authenticate, limit. Used by the CLI and the API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import func, select, text, update
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
    # The account's own inbound limit (requests/s); None: the configured default; 0: none.
    rate_limit_rps: int | None = None
    # When the key stops working; checked on every use, cached or not (auth/cache.py).
    expires_at: datetime | None = None
    key_prefix: str | None = None

    def allows(self, scope: Scope) -> bool:
        return scope.value in self.scopes or Scope.admin.value in self.scopes

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))


@dataclass(frozen=True)
class Refusal:
    """Why a key was not accepted. `account_id`/`api_key_id` are known only when the
    key's secret matched (revoked, expired): never for guesses."""

    reason: Literal["malformed", "unknown", "revoked", "expired"]
    key_prefix: str | None = None
    account_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None


class UnknownAccount(LookupError):
    pass


class AccountExists(ValueError):
    """Account names are unique."""


async def create_account(session: AsyncSession, name: str, details: dict | None = None) -> Account:
    if await session.scalar(select(Account.id).where(Account.name == name)) is not None:
        raise AccountExists(name)
    account = Account(name=name, details=details or {"display_name": name})
    session.add(account)
    await session.flush()
    audit.record(session, "account.created", account_id=account.id, object_type="account", object_id=account.id,
                 changes={"name": (None, name)})
    return account


async def get_or_create_account(session: AsyncSession, name: str) -> Account:
    account = await session.scalar(select(Account).where(Account.name == name))
    return account or await create_account(session, name)


async def _account(session: AsyncSession, name: str) -> Account:
    account = await session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise UnknownAccount(name)
    return account


async def create_key(
    session: AsyncSession,
    account_name: str,
    scopes: Iterable[Scope],
    *,
    name: str | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Returns the row and the secret; the secret exists nowhere else after this."""
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= datetime.now(UTC)):
        raise ValueError("a key's expiry must be a time zone-aware moment in the future")
    account = await _account(session, account_name)
    new = keys.generate()
    row = ApiKey(
        account_id=account.id,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        scopes=sorted({Scope(s).value for s in scopes}),
        name=name,
        expires_at=expires_at,
    )
    session.add(row)
    await session.flush()
    audit.record(session, "api_key.created", account_id=account.id, object_type="api_key", object_id=row.id,
                 changes={"prefix": (None, row.prefix), "scopes": (None, row.scopes)})
    return row, new.secret


async def find_key(session: AsyncSession, ref: str) -> ApiKey | None:
    """The key named by `ref`: the whole key (its secret must match), its id, or the
    prefix `create` prints (`pd_<prefix>` or the bare 12 characters)."""
    ref = ref.strip()
    if (prefix := keys.prefix_of(ref)) is not None:
        row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        # A wrong secret with a real prefix names nothing: no revoking by half a key.
        return row if row is not None and keys.matches(ref, row.secret_hash) else None
    try:
        return await session.scalar(select(ApiKey).where(ApiKey.id == uuid.UUID(ref)))
    except ValueError:
        pass
    prefix = ref.removeprefix("pd_")
    if not keys.is_prefix(prefix):
        return None
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


async def revoke_key(session: AsyncSession, ref: str) -> ApiKey | None:
    """Revoke the key `ref` names (see `find_key`); None when none is live. Takes effect
    everywhere within the authenticator cache's TTL (PAYMENTD_AUTH_CACHE_S)."""
    row = await find_key(session, ref)
    if row is None:
        return None
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None)).values(revoked_at=func.now())
        .returning(ApiKey.revoked_at)
    )
    revoked_at = result.scalar_one_or_none()
    if revoked_at is None:
        return None  # revoked already
    audit.record(session, "api_key.revoked", account_id=row.account_id, object_type="api_key", object_id=row.id,
                 changes={"revoked": (False, True)})
    await session.refresh(row)
    return row


async def audit_expired_keys(session: AsyncSession) -> int:
    """An expiry happens by itself, with no request to record it: each key found past
    its expiry gets its one `api_key.expired` entry (by the `system` actor), in the
    hourly cleanup. The lock keeps two workers from writing it twice."""
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('paymentd.api_key.expired'))"))
    found = (await session.execute(text(
        "SELECT k.id, k.account_id, k.expires_at FROM api_keys k"
        " WHERE k.expires_at <= clock_timestamp() AND k.revoked_at IS NULL AND NOT EXISTS ("
        "   SELECT 1 FROM audit_entries e WHERE e.account_id = k.account_id AND e.object_id = k.id::text"
        "   AND e.action = 'api_key.expired')"
    ))).all()
    for key_id, account_id, expires_at in found:
        audit.record(session, "api_key.expired", account_id=account_id, object_type="api_key", object_id=key_id,
                     actor=audit.context.SYSTEM, changes={"expires_at": (None, expires_at)})
    return len(found)


async def list_keys(session: AsyncSession, account_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Every key (revoked and expired ones too) with its account's name, oldest first."""
    query = select(ApiKey, Account.name).join(Account, Account.id == ApiKey.account_id)
    if account_name is not None:
        query = query.where(ApiKey.account_id == (await _account(session, account_name)).id)
    rows = await session.execute(query.order_by(ApiKey.created_at, ApiKey.id))
    return [(key, name) for key, name in rows]


async def set_rate_limit(session: AsyncSession, account_name: str, rps: int | None) -> Account:
    """An account's inbound limit in requests/s: None for the configured default, 0 for none."""
    if rps is not None and rps < 0:
        raise ValueError("a rate limit cannot be negative")
    account = await _account(session, account_name)
    account.rate_limit_rps = rps
    await session.flush()
    return account


async def authenticate(session: AsyncSession, key: str) -> Principal | Refusal:
    """The principal for a live key, or why not. Callers answer every refusal the same
    way (401), except that an expired key may say so: only its holder can learn that."""
    prefix = keys.prefix_of(key)
    if prefix is None:
        return Refusal("malformed")
    found = (await session.execute(
        select(ApiKey, Account.rate_limit_rps).join(Account, Account.id == ApiKey.account_id)
        .where(ApiKey.prefix == prefix)
    )).first()
    if found is None or not keys.matches(key, found[0].secret_hash):
        return Refusal("unknown", key_prefix=prefix)
    row, rate_limit_rps = found
    if row.revoked_at is not None:
        return Refusal("revoked", key_prefix=prefix, account_id=row.account_id, api_key_id=row.id)
    principal = Principal(
        account_id=row.account_id,
        api_key_id=row.id,
        scopes=frozenset(row.scopes),
        rate_limit_rps=rate_limit_rps,
        expires_at=row.expires_at,
        key_prefix=prefix,
    )
    if principal.expired():
        return Refusal("expired", key_prefix=prefix, account_id=row.account_id, api_key_id=row.id)
    return principal
