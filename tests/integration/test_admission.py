"""A process at capacity answers 503 quickly, having done nothing, instead of making
every request slow; health checks still answer."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from paymentd.app import create_app
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from tests.conftest import make_key
from tests.support.servers import ThreadedServer

CONFIRM = "POST /v1/payment_intents/{intent}/confirm"


@pytest.fixture
def one_at_a_time(settings: Settings):  # type: ignore[no-untyped-def]
    server = ThreadedServer(create_app(settings.model_copy(update={"max_in_flight": 1}))).start()
    yield server
    server.stop()


async def test_a_request_with_no_place_in_time_gets_a_quick_retryable_503(  # type: ignore[no-untyped-def]
    one_at_a_time, database, sim_config
) -> None:
    _, key = await make_key(database, f"admission-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(base_url=one_at_a_time.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        user = (await client.post("/api/users", json={"email": "a@x.co", "name": "A"})).json()
        payment = (await client.post("/api/payments/create", json={"user_id": user["id"], "amount": "5"})).json()
        sim_config(latency_by_operation={CONFIRM: {"latency_ms": 1500}})
        # Holds the only place while Stripe takes 1.5 s (it asked to wait for it).
        holder = asyncio.create_task(client.post(
            "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"},
            headers={"Prefer": "wait=5"}))
        await asyncio.sleep(0.3)

        key_header = {"Idempotency-Key": str(uuid.uuid4())}
        started = time.monotonic()
        refused = await client.post("/api/payments/create", json={"user_id": user["id"], "amount": "7"},
                                    headers={**key_header, "X-Request-Id": "req-overloaded"})
        waited = time.monotonic() - started
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        # The envelope carries paymentd's own id; the caller's is echoed in X-Request-Id.
        assert (error["type"], error["code"], error["request_id"]) == (
            "api_error", "overloaded", refused.headers["paymentd-request-id"])
        assert refused.headers["retry-after"] == "1" and refused.headers["x-request-id"] == "req-overloaded"
        assert 0.15 <= waited < 1.0, f"waited {waited:.2f} s: half the 0.4 s budget, then refused"
        assert (await client.get("/healthz")).status_code == 200  # never held back

        assert (await holder).status_code == 200
        # Nothing was done for the refused request: its key was never claimed, so the
        # same request now simply runs.
        again = await client.post("/api/payments/create", json={"user_id": user["id"], "amount": "7"},
                                  headers=key_header)
        assert again.status_code == 201, again.text
        assert again.headers.get("idempotent-replayed") is None
        listed = (await client.get("/api/payments/history", params={"user_id": user["id"]})).json()["data"]
        assert sorted(p["amount"] for p in listed) == ["5.00", "7.00"]
