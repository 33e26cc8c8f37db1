"""Idempotency-Key as API.md says: one side effect, replays, 422 on reuse, 409 in flight."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from paymentd.db import Database
from paymentd.payments.models import Payment
from tests.conftest import Merchant, sim_requests

CREATE_OP = "POST /v1/payment_intents"


async def test_fifty_concurrent_identical_creates_make_one_payment(
    merchant: Merchant, database: Database, sim, sim_config  # type: ignore[no-untyped-def]
) -> None:
    user = await merchant.user()
    # Slow Stripe a little so the requests really overlap with the first one in flight.
    sim_config(latency_by_operation={CREATE_OP: {"latency_ms": 150}})
    key = f"order-{uuid.uuid4()}"
    body = {"user_id": user["id"], "amount": "42.00", "metadata": {"order": key}}

    async def one() -> httpx.Response:
        return await merchant.client.post("/api/payments/create", json=body, headers={"Idempotency-Key": key})

    responses = await asyncio.gather(*[one() for _ in range(50)])
    created = [r for r in responses if r.status_code == 201]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_flight) == 50, {r.status_code for r in responses}
    assert all(r.json()["error"]["type"] == "idempotency_error" for r in in_flight)
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in created) == len(created) - 1

    async with database.transaction() as session:
        # Metadata is sealed at rest (crypto/): matched after loading, not in SQL.
        mine = (await session.scalars(select(Payment).where(Payment.account_id == merchant.account_id))).all()
        count = sum(payment.metadata_.get("order") == key for payment in mine)
    assert count == 1
    intents = [r for r in sim_requests(sim, operation=CREATE_OP) if (r["params"] or {}).get("metadata", {}).get("order") == key]
    assert len({r["idempotency_key"] for r in intents}) == 1, "one PaymentIntent key at Stripe"


async def test_replay_returns_the_first_response(merchant: Merchant) -> None:
    user = await merchant.user()
    key = str(uuid.uuid4())
    first = await merchant.client.post(
        "/api/payments/create", json={"user_id": user["id"], "amount": "10"}, headers={"Idempotency-Key": key}
    )
    again = await merchant.client.post(
        "/api/payments/create",
        content=f'{{ "amount": "10",  "user_id": "{user["id"]}" }}',  # same JSON, other spacing and order
        headers={"Idempotency-Key": key, "Content-Type": "application/json"},
    )
    assert (again.status_code, again.json()) == (first.status_code, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers["x-request-id"] != first.headers["x-request-id"]


async def test_declines_are_replayed_too(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = (await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "10"})).json()
    body = {"payment_id": payment["id"], "payment_method": "pm_card_chargeDeclined"}
    first = await merchant.client.post("/api/payments/confirm", json=body, headers={"Idempotency-Key": "decline-1"})
    again = await merchant.client.post("/api/payments/confirm", json=body, headers={"Idempotency-Key": "decline-1"})
    assert first.status_code == again.status_code == 402
    assert again.json() == first.json()
    detail = (await merchant.client.get(f"/api/payments/{payment['id']}")).json()
    assert [e["to"] for e in detail["events"]].count("requires_payment_method") == 1


@pytest.mark.parametrize("other", ["body", "endpoint"])
async def test_same_key_with_other_request_is_422(merchant: Merchant, other: str) -> None:
    user = await merchant.user()
    key = str(uuid.uuid4())
    await merchant.client.post(
        "/api/payments/create", json={"user_id": user["id"], "amount": "10"}, headers={"Idempotency-Key": key}
    )
    if other == "body":
        response = await merchant.client.post(
            "/api/payments/create", json={"user_id": user["id"], "amount": "11"}, headers={"Idempotency-Key": key}
        )
    else:
        response = await merchant.client.post(
            "/api/users", json={"email": "a@b.co", "name": "A"}, headers={"Idempotency-Key": key}
        )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "idempotency_error"


async def test_keys_are_scoped_to_the_account(merchant: Merchant, paymentd, database: Database) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_key
    from paymentd.auth.keys import Scope

    key = "shared-key-1"
    user = await merchant.user()
    mine = await merchant.client.post(
        "/api/payments/create", json={"user_id": user["id"], "amount": "10"}, headers={"Idempotency-Key": key}
    )
    _, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:6]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        theirs = await other.post("/api/users", json={"email": "b@c.co", "name": "B"}, headers={"Idempotency-Key": key})
    assert mine.status_code == 201 and theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_malformed_keys_are_refused(merchant: Merchant, key: str) -> None:
    response = await merchant.client.post(
        "/api/users", json={"email": "a@b.co", "name": "A"}, headers={"Idempotency-Key": key.encode("utf-8")}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "Idempotency-Key"


async def test_create_survives_stripe_failing_and_confirm_finishes_it(
    merchant: Merchant, sim, sim_config  # type: ignore[no-untyped-def]
) -> None:
    """Stripe failing past the SDK's retries: create still answers in budget (no
    PaymentIntent yet), and confirm later re-sends the very same keyed create."""
    user = await merchant.user()
    httpx.post(f"{sim.url}/_sim/faults", json={"kind": "api_error", "count": 3, "operation": CREATE_OP})
    created = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "12.00"})
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["stripe_payment_intent_id"] is None and payment["status"] == "requires_payment_method"
    key = f"paymentd:{payment['id']}:create"
    for _ in range(100):  # the SDK's retries finish in the background
        if len([r for r in sim_requests(sim, operation=CREATE_OP) if r["idempotency_key"] == key]) >= 3:
            break
        await asyncio.sleep(0.05)

    confirmed = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "succeeded"
    assert confirmed.json()["stripe_payment_intent_id"].startswith("pi_")
    creates = [r for r in sim_requests(sim, operation=CREATE_OP) if payment["id"] in (r["idempotency_key"] or "")]
    assert {r["idempotency_key"] for r in creates} == {key}
    assert [r["status"] for r in creates] == [500, 500, 500, 200]
