"""Stripe misbehaving at a 30% rate (500s, 429s, lock timeouts, dropped connections
before and after Stripe acted, timeouts) over 200 payments: every payment ends
succeeded or with a clear error, none is charged twice, none is lost."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from tests.conftest import make_key, sim_requests
from tests.support.servers import ThreadedServer

PAYMENTS = 200
CONFIRM = "POST /v1/payment_intents/{intent}/confirm"
CREATE = "POST /v1/payment_intents"
RETRYABLE = {409, 429, 502, 503, 504}


@pytest.fixture
def fragile_paymentd(settings: Settings):  # type: ignore[no-untyped-def]
    """paymentd with a short Stripe timeout, so injected hangs cost a second, not ten."""
    server = ThreadedServer(create_app(settings.model_copy(update={"stripe_timeout_s": 1.0}))).start()
    yield server
    server.stop()


async def until_final(client: httpx.AsyncClient, payment_id: str) -> dict:
    for _ in range(300):
        body = (await client.get(f"/api/payments/{payment_id}")).json()
        if body["status"] not in ("processing", "requires_confirmation"):
            return body
        await asyncio.sleep(0.1)
    return body


async def post_until_answered(client: httpx.AsyncClient, path: str, body: dict) -> httpx.Response:
    """What a careful client does: retry transient failures with the same key."""
    key = str(uuid.uuid4())
    for _ in range(40):
        response = await client.post(path, json=body, headers={"Idempotency-Key": key, "Prefer": "wait=5"})
        if response.status_code not in RETRYABLE:
            return response
        await asyncio.sleep(0.2)
    return response


@pytest.mark.slow
async def test_payments_survive_a_faulty_stripe(fragile_paymentd, database, sim, sim_config) -> None:  # type: ignore[no-untyped-def]
    _, key = await make_key(database, f"faults-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(
        base_url=fragile_paymentd.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as client:
        user = (await client.post("/api/users", json={"email": "f@x.co", "name": "F"})).json()
        httpx.delete(f"{sim.url}/_sim/requests")  # count only this test's traffic
        sim_config(
            seed=7,
            hang_s=1.5,
            fault_rates={"api_error": 0.06, "rate_limit": 0.06, "lock_timeout": 0.04,
                         "drop": 0.05, "drop_after": 0.05, "timeout": 0.04},
        )
        gate = asyncio.Semaphore(20)

        async def one(i: int) -> tuple[str, dict]:
            async with gate:
                created = await post_until_answered(
                    client, "/api/payments/create", {"user_id": user["id"], "amount": "10.00", "metadata": {"n": str(i)}}
                )
                assert created.status_code == 201, created.text
                payment = created.json()
                confirmed = await post_until_answered(
                    client, "/api/payments/confirm", {"payment_id": payment["id"], "payment_method": "pm_card_visa"}
                )
                assert confirmed.status_code in (200, 202, 402), confirmed.text
                return payment["id"], confirmed.json()

        results = await asyncio.gather(*[one(i) for i in range(PAYMENTS)])
        sim_config(fault_rates={})
        finals = {pid: await until_final(client, pid) for pid, _ in results}

    assert len(finals) == PAYMENTS, "every payment answered and none lost"
    unsettled = {pid: p["status"] for pid, p in finals.items() if p["status"] != "succeeded"}
    assert not unsettled, unsettled

    # At "Stripe": one PaymentIntent per payment, and at most one confirm key per intent.
    log = sim_requests(sim)
    failed = [r for r in log if r["status"] != 200]
    assert len(failed) > PAYMENTS * 2 * 0.15, "the faults must really have been injected"
    intents_by_payment: dict[str, set[str]] = defaultdict(set)
    confirm_keys: dict[str, set[str]] = defaultdict(set)
    for request in log:
        idem = request.get("idempotency_key") or ""
        if request["operation"] == CREATE and request["status"] == 200:
            intents_by_payment[idem.split(":")[1]].add(idem)
        if request["operation"] == CONFIRM and request["status"] == 200:
            confirm_keys[request["path"].split("/")[3]].add(idem)
    for pid, payment in finals.items():
        assert len(intents_by_payment[pid]) == 1, f"payment {pid} has several PaymentIntent keys"
        assert len(confirm_keys[payment["stripe_payment_intent_id"]]) == 1, "a PaymentIntent confirmed twice"
