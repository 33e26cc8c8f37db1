"""API-key hygiene: expiry, last use written off the hot path, list, revoke by the whole
key, the id or the prefix."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from paymentd.app import create_app
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.auth.models import ApiKey
from paymentd.config import Settings
from paymentd.db import Database
from tests.support.servers import ThreadedServer


async def new_key(database: Database, *, expires_at: datetime | None = None) -> tuple[ApiKey, str, str]:
    account = f"keys-{uuid.uuid4().hex[:8]}"
    async with database.transaction() as session:
        await auth_service.get_or_create_account(session, account)
        row, secret = await auth_service.create_key(session, account, [Scope.payments_read], expires_at=expires_at)
        return row, secret, account


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_an_expired_key_is_a_401_even_while_cached(paymentd, database: Database) -> None:  # type: ignore[no-untyped-def]
    row, secret, _ = await new_key(database, expires_at=datetime.now(UTC) + timedelta(seconds=1.5))
    async with httpx.AsyncClient(base_url=paymentd.url, headers=bearer(secret)) as client:
        assert (await client.get("/api/payments/history")).status_code == 200  # now cached
        await asyncio.sleep(1.6)
        response = await client.get("/api/payments/history")
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("authentication_error", "api_key_expired")


async def test_a_key_cannot_be_made_already_expired(database: Database) -> None:
    with pytest.raises(ValueError):
        await new_key(database, expires_at=datetime.now(UTC) - timedelta(seconds=1))


@pytest.fixture
def quick_usage(settings: Settings):  # type: ignore[no-untyped-def]
    server = ThreadedServer(create_app(settings.model_copy(update={"key_usage_flush_s": 3}))).start()
    yield server
    server.stop()


async def last_used(database: Database, key_id: uuid.UUID) -> datetime | None:
    async with database.transaction() as session:
        return await session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


async def test_last_used_at_is_written_once_per_interval_not_per_request(  # type: ignore[no-untyped-def]
    quick_usage, database: Database
) -> None:
    row, secret, _ = await new_key(database)
    assert await last_used(database, row.id) is None
    before = datetime.now(UTC)

    async def written_after(seen: datetime | None) -> datetime:
        for _ in range(100):  # polled, so the next flush is seen within 50 ms of it
            found = await last_used(database, row.id)
            if found is not None and (seen is None or found > seen):
                return found
            await asyncio.sleep(0.05)
        raise AssertionError("last_used_at was not written within 5 s")

    async with httpx.AsyncClient(base_url=quick_usage.url, headers=bearer(secret)) as client:
        assert (await client.get("/api/payments/history")).status_code == 200
        first = await written_after(None)  # one flush
        assert before - timedelta(seconds=1) <= first <= datetime.now(UTC)
        # Many requests right after a flush, within one 3 s interval: nothing is written...
        for _ in range(10):
            assert (await client.get("/api/payments/history")).status_code == 200
        assert await last_used(database, row.id) == first
        # ...until the next flush, which writes the latest use, once.
        assert await written_after(first) > first


async def test_list_shows_every_key_of_an_account_without_secrets(database: Database) -> None:
    row, secret, account = await new_key(database, expires_at=datetime.now(UTC) + timedelta(days=90))
    async with database.transaction() as session:
        other, _ = await auth_service.create_key(session, account, [Scope.admin])
        assert await auth_service.revoke_key(session, str(other.id))
        listed = await auth_service.list_keys(session, account)
        with pytest.raises(auth_service.UnknownAccount):
            await auth_service.list_keys(session, f"nobody-{uuid.uuid4().hex}")
    assert [(k.id, name) for k, name in listed] == [(row.id, account), (other.id, account)]
    assert listed[0][0].expires_at is not None and listed[1][0].revoked_at is not None


@pytest.mark.parametrize("how", ["whole key", "id", "printed prefix", "bare prefix"])
async def test_revoke_by_whole_key_id_or_prefix(paymentd, database: Database, settings, how: str) -> None:  # type: ignore[no-untyped-def]
    row, secret, _ = await new_key(database)
    ref = {"whole key": secret, "id": str(row.id), "printed prefix": f"pd_{row.prefix}",
           "bare prefix": row.prefix}[how]
    async with httpx.AsyncClient(base_url=paymentd.url, headers=bearer(secret)) as client:
        assert (await client.get("/api/payments/history")).status_code == 200
        async with database.transaction() as session:
            revoked = await auth_service.revoke_key(session, ref)
        assert revoked is not None and revoked.id == row.id and revoked.revoked_at is not None
        async with database.transaction() as session:
            assert await auth_service.revoke_key(session, ref) is None  # once only
        await asyncio.sleep(settings.auth_cache_s)  # the documented delay: the cache's TTL
        response = await client.get("/api/payments/history")
    assert response.status_code == 401 and response.json()["error"]["code"] == "api_key_invalid"


async def test_revoke_refuses_a_whole_key_with_a_wrong_secret_and_nonsense(database: Database) -> None:
    row, secret, _ = await new_key(database)
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    async with database.transaction() as session:
        assert await auth_service.revoke_key(session, forged) is None
        assert await auth_service.revoke_key(session, "not a key") is None
        assert await auth_service.revoke_key(session, str(uuid.uuid4())) is None
        assert (await session.get(ApiKey, row.id)).revoked_at is None


async def test_an_expiry_is_audited_once_by_the_system(database: Database) -> None:
    row, _, _ = await new_key(database, expires_at=datetime.now(UTC) + timedelta(seconds=1))
    await asyncio.sleep(1.1)
    for _ in range(2):  # the hourly cleanup, run twice: one entry
        async with database.transaction() as session:
            await auth_service.audit_expired_keys(session)
    async with database.sql_connection() as conn:
        entries = await conn.fetch(
            "SELECT actor_type, account_id FROM audit_entries WHERE action = 'api_key.expired' AND object_id = $1",
            str(row.id))
    assert [(e["actor_type"], e["account_id"]) for e in entries] == [("system", row.account_id)]
