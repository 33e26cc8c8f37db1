"""Saved payment methods through the HTTP API, against the simulator: a Stripe customer
made on first need, methods attached, listed, detached, and used (or refused) to pay."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from paymentd.auth.keys import Scope
from tests.conftest import Merchant, make_key, sim_requests


async def save(merchant: Merchant, user_id: str, pm: str = "pm_card_visa") -> httpx.Response:
    return await merchant.client.post(f"/api/users/{user_id}/payment-methods", json={"payment_method": pm})


async def test_save_list_detach(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    first = await save(merchant, user["id"], "pm_card_visa")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"].startswith("pm_") and body["type"] == "card"
    assert body["card"]["brand"] == "visa" and body["card"]["last4"] == "4242"
    assert 1 <= body["card"]["exp_month"] <= 12 and body["card"]["exp_year"] >= 2026
    assert set(body["card"]) == {"brand", "last4", "exp_month", "exp_year"}  # never more
    second = await save(merchant, user["id"], "pm_card_mastercard")
    assert second.status_code == 201

    # One customer for the user, created with a key derived from the user id.
    customers = [r for r in sim_requests(sim, operation="POST /v1/customers")
                 if r["idempotency_key"] == f"paymentd:user:{user['id']}:customer"]
    assert len(customers) == 1  # the second save found it stored

    listed = await merchant.client.get(f"/api/users/{user['id']}/payment-methods")
    assert listed.status_code == 200
    assert [m["card"]["last4"] for m in listed.json()["data"]] == ["4242", "4444"]

    detached = await merchant.client.delete(f"/api/users/{user['id']}/payment-methods/{body['id']}")
    assert detached.status_code == 200, detached.text
    assert detached.json()["id"] == body["id"]
    listed = await merchant.client.get(f"/api/users/{user['id']}/payment-methods")
    assert [m["id"] for m in listed.json()["data"]] == [second.json()["id"]]
    again = await merchant.client.delete(f"/api/users/{user['id']}/payment-methods/{body['id']}")
    assert again.status_code == 404


async def test_not_this_users_method_or_user(merchant: Merchant, database, paymentd) -> None:  # type: ignore[no-untyped-def]
    ann, bob = await merchant.user(), await merchant.user()
    anns = (await save(merchant, ann["id"])).json()
    detach = await merchant.client.delete(f"/api/users/{bob['id']}/payment-methods/{anns['id']}")
    assert detach.status_code == 404 and detach.json()["error"]["type"] == "invalid_request_error"
    # Still Ann's.
    assert [m["id"] for m in (await merchant.client.get(f"/api/users/{ann['id']}/payment-methods")).json()["data"]] \
        == [anns["id"]]
    # Bob cannot save Ann's method as his.
    taken = await save(merchant, bob["id"], anns["id"])
    assert taken.status_code in (400, 409)
    missing = await merchant.client.get(f"/api/users/{uuid.uuid4()}/payment-methods")
    assert missing.status_code == 404
    bad = await merchant.client.post(f"/api/users/{ann['id']}/payment-methods", json={"payment_method": "card_1"})
    assert bad.status_code == 400
    unknown = await save(merchant, ann["id"], "pm_doesnotexist123")
    assert unknown.status_code in (400, 404)

    # Another account sees neither the user nor the method.
    _, key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"}) as other:
        assert (await other.get(f"/api/users/{ann['id']}/payment-methods")).status_code == 404
        assert (await other.delete(f"/api/users/{ann['id']}/payment-methods/{anns['id']}")).status_code == 404


async def test_pay_with_a_saved_method(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    ann, bob = await merchant.user(), await merchant.user()
    anns = (await save(merchant, ann["id"])).json()

    mine = (await merchant.client.post("/api/payments/create",
                                       json={"user_id": ann["id"], "amount": "12.00"})).json()
    paid = await merchant.client.post("/api/payments/confirm",
                                      json={"payment_id": mine["id"], "payment_method": anns["id"]})
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "succeeded"

    bobs = (await merchant.client.post("/api/payments/create",
                                       json={"user_id": bob["id"], "amount": "12.00"})).json()
    refused = await merchant.client.post("/api/payments/confirm",
                                         json={"payment_id": bobs["id"], "payment_method": anns["id"]})
    assert refused.status_code == 404, refused.text
    assert refused.json()["error"]["param"] == "payment_method"
    # Refused before Stripe: no confirm was sent for Bob's payment, and it can still be paid.
    assert not [r for r in sim_requests(sim) if bobs["stripe_payment_intent_id"] in r["path"]
                and r["path"].endswith("/confirm")]
    detail = (await merchant.client.get(f"/api/payments/{bobs['id']}")).json()
    assert detail["status"] == "requires_payment_method"
    ok = await merchant.client.post("/api/payments/confirm",
                                    json={"payment_id": bobs["id"], "payment_method": "pm_card_visa"})
    assert ok.json()["status"] == "succeeded"


async def test_saving_waits_on_stripe_no_longer_than_the_budget(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    """Stripe slower than the budget: 503 with Retry-After at once; the attach finishes
    in the background and the same request, retried, answers from it."""
    user = await merchant.user()
    sim_config(latency_by_operation={"POST /v1/payment_methods/{payment_method}/attach": {"latency_ms": 1500}})
    slow = await merchant.client.post(f"/api/users/{user['id']}/payment-methods", json={"payment_method": "pm_card_visa"})
    assert slow.status_code == 503, slow.text
    assert slow.headers["retry-after"] == "1"
    await asyncio.sleep(2)
    again = await merchant.client.post(f"/api/users/{user['id']}/payment-methods", json={"payment_method": "pm_card_visa"})
    assert again.status_code == 201, again.text
    listed = (await merchant.client.get(f"/api/users/{user['id']}/payment-methods")).json()["data"]
    assert len(listed) == 1
