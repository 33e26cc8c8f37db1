"""Per-account request limits and the per-address failed-authentication throttle:
429 rate_limit_error with Retry-After, others unaffected, health and webhooks never limited."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from tests.conftest import make_key
from tests.support.servers import ThreadedServer

REDIS_URL = "redis://127.0.0.1:6379/0"


def served(settings: Settings, **update) -> ThreadedServer:  # type: ignore[no-untyped-def]
    return ThreadedServer(create_app(settings.model_copy(update=update))).start()


@pytest.fixture
def limited(settings: Settings):  # type: ignore[no-untyped-def]
    server = served(settings, account_rps=5, auth_fail_limit=5, auth_fail_window_s=30)
    yield server
    server.stop()


def assert_429(response: httpx.Response, code: str) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", code)
    assert int(response.headers["retry-after"]) >= 1


async def test_an_account_over_its_limit_gets_429_while_another_is_fine(limited, database: Database) -> None:  # type: ignore[no-untyped-def]
    _, noisy = await make_key(database, f"noisy-{uuid.uuid4().hex[:6]}", list(Scope))
    _, quiet = await make_key(database, f"quiet-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(base_url=limited.url) as client:
        burst = await asyncio.gather(*[
            client.get("/api/payments/history", headers={"Authorization": f"Bearer {noisy}"}) for _ in range(20)])
        calm = [await client.get("/api/payments/history", headers={"Authorization": f"Bearer {quiet}"})
                for _ in range(3)]
        health = await client.get("/healthz")
    statuses = sorted(r.status_code for r in burst)
    # 5/s in a sliding window: at most twice that if the burst straddles two windows.
    assert statuses.count(200) <= 10 and statuses.count(429) >= 10, statuses
    assert_429(next(r for r in burst if r.status_code == 429), "account_rate_limited")
    assert [r.status_code for r in calm] == [200, 200, 200]
    assert health.status_code == 200


async def test_an_accounts_own_limit_overrides_the_default(limited, database: Database, settings) -> None:  # type: ignore[no-untyped-def]
    name = f"big-{uuid.uuid4().hex[:6]}"
    _, key = await make_key(database, name, list(Scope))
    async with database.transaction() as session:
        await auth_service.set_rate_limit(session, name, 0)  # no limit for this account
    await asyncio.sleep(settings.auth_cache_s)
    async with httpx.AsyncClient(base_url=limited.url, headers={"Authorization": f"Bearer {key}"}) as client:
        burst = await asyncio.gather(*[client.get("/api/payments/history") for _ in range(12)])
    assert {r.status_code for r in burst} == {200}
    async with database.transaction() as session:
        with pytest.raises(ValueError):
            await auth_service.set_rate_limit(session, name, -1)
        with pytest.raises(auth_service.UnknownAccount):
            await auth_service.set_rate_limit(session, f"nobody-{uuid.uuid4().hex}", 5)


async def test_repeated_failed_authentication_blocks_the_address_not_others(limited, database: Database) -> None:  # type: ignore[no-untyped-def]
    _, good = await make_key(database, f"good-{uuid.uuid4().hex[:6]}", list(Scope))
    guesser = {"X-Forwarded-For": "203.0.113.7"}  # uvicorn trusts it from loopback (FORWARDED_ALLOW_IPS)
    neighbour = {"X-Forwarded-For": "203.0.113.8"}
    async with httpx.AsyncClient(base_url=limited.url) as client:
        for _ in range(5):
            guess = await client.get("/api/payments/history", headers={
                **guesser, "Authorization": f"Bearer pd_{uuid.uuid4().hex[:12]}_{'A' * 43}"})
            assert guess.status_code == 401
        # Blocked: even a right key from that address is refused without being checked.
        blocked = await client.get("/api/payments/history", headers={**guesser, "Authorization": f"Bearer {good}"})
        assert_429(blocked, "too_many_failed_authentications")
        assert int(blocked.headers["retry-after"]) <= 30
        # Requests without a key are no guesses; the health check and Stripe's webhook are not held.
        assert (await client.get("/healthz", headers=guesser)).status_code == 200
        hook = await client.post("/api/webhooks/stripe", content=b"{}", headers={
            **guesser, "Stripe-Signature": "t=1,v1=00", "Authorization": "Bearer nonsense"})
        assert hook.status_code == 400  # a bad signature, judged as usual
        # Another address is untouched.
        fine = await client.get("/api/payments/history", headers={**neighbour, "Authorization": f"Bearer {good}"})
        assert fine.status_code == 200


async def test_the_account_limit_is_shared_by_processes_through_redis(settings: Settings, database: Database) -> None:
    shared = {"redis_url": REDIS_URL, "redis_key_prefix": f"test-{uuid.uuid4().hex}", "account_rps": 6}
    one, two = served(settings, **shared), served(settings, **shared)
    try:
        _, key = await make_key(database, f"shared-{uuid.uuid4().hex[:6]}", list(Scope))
        auth = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(headers=auth) as client:
            burst = await asyncio.gather(*[client.get(f"{server.url}/api/payments/history")
                                           for server in (one, two) for _ in range(12)])
    finally:
        one.stop(), two.stop()
    statuses = [r.status_code for r in burst]
    # Counted apart, each process would let all 12 through (6/s, two windows at most);
    # counted together, at most 12 of the 24 pass.
    assert statuses.count(200) <= 12 and statuses.count(429) >= 12, statuses
