"""One account's burst cannot make another account's requests fail: capacity in a
process is shared fairly between accounts (admission.py)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from tests.conftest import make_key
from tests.support.servers import ThreadedServer

CREATE_OP = "POST /v1/payment_intents"


@pytest.fixture
def shared_server(settings: Settings):  # type: ignore[no-untyped-def]
    # The shipped defaults for admission; the per-account rate limit is lifted so only
    # capacity is under test here.
    server = ThreadedServer(create_app(settings.model_copy(update={"account_rps": 0}))).start()
    yield server
    server.stop()


async def test_a_burst_of_slow_creates_from_one_account_fails_none_of_anothers_reads(  # type: ignore[no-untyped-def]
    shared_server, database, sim_config
) -> None:
    _, key_a = await make_key(database, f"burst-{uuid.uuid4().hex[:6]}", list(Scope))
    _, key_b = await make_key(database, f"quiet-{uuid.uuid4().hex[:6]}", list(Scope))
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with (
        httpx.AsyncClient(base_url=shared_server.url, headers={"Authorization": f"Bearer {key_a}"},
                          timeout=60, limits=limits) as a,
        httpx.AsyncClient(base_url=shared_server.url, headers={"Authorization": f"Bearer {key_b}"},
                          timeout=60, limits=limits) as b,
    ):
        user_a = (await a.post("/api/users", json={"email": "a@x.co", "name": "A"})).json()
        user_b = (await b.post("/api/users", json={"email": "b@x.co", "name": "B"})).json()
        payment_b = (await b.post("/api/payments/create", json={"user_id": user_b["id"], "amount": "3"})).json()
        # Stripe takes 1.5 s to create each of A's PaymentIntents, and A waits for them
        # (`Prefer: wait`): A's burst holds every place it can get for that long.
        sim_config(latency_by_operation={CREATE_OP: {"latency_ms": 1500}})

        burst = [asyncio.create_task(a.post("/api/payments/create", json={"user_id": user_a["id"], "amount": "5"},
                                            headers={"Prefer": "wait=10"}))
                 for _ in range(100)]
        await asyncio.sleep(0.3)  # A's burst has arrived and taken the process
        reads = [b.get(f"/api/payments/{payment_b['id']}") if i % 2 else b.get(f"/api/users/{user_b['id']}")
                 for i in range(20)]
        answers = await asyncio.gather(*reads)
        a_answers = await asyncio.gather(*burst)

    failed = [(r.status_code, r.text[:200]) for r in answers if r.status_code != 200]
    assert failed == [], f"{len(failed)} of B's 20 reads failed: {failed[:3]}"
    # A's own burst was served or shed, never left hanging or broken; A alone may use
    # every place but the reserve kept for others (64 - 64 // 4 = 48).
    assert {r.status_code for r in a_answers} <= {201, 503}, {r.status_code for r in a_answers}
    assert 40 <= sum(r.status_code == 201 for r in a_answers) <= 48
