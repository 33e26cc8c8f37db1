"""Refunds through paymentd's HTTP API, against the simulator over HTTP: full, partial,
repeated, concurrent, slow, refused, and failing later at Stripe."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.auth.keys import Scope
from paymentd.db import Database
from paymentd.providers.stripe import StripeProvider
from paymentd.payments.sync import WEBHOOK
from paymentd.refunds.models import Refund
from paymentd.refunds.service import apply_refund_event
from tests.conftest import Merchant, make_key, sim_requests

REFUND_CREATE = "POST /v1/refunds"


async def paid(merchant: Merchant, amount: str = "100.00", pm: str = "pm_card_visa", **fields) -> dict:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    created = await merchant.client.post(
        "/api/payments/create", json={"user_id": user["id"], "amount": amount, **fields}
    )
    assert created.status_code == 201, created.text
    confirmed = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": created.json()["id"], "payment_method": pm}
    )
    assert confirmed.status_code == 200, confirmed.text
    return confirmed.json()


async def refund(merchant: Merchant, payment_id: str, **fields) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await merchant.client.post("/api/payments/refund", json={"payment_id": payment_id, **fields})


async def get(merchant: Merchant, payment_id: str) -> dict:
    response = await merchant.client.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


def stripe_refunds(sim, payment: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    return [r for r in sim_requests(sim, operation=REFUND_CREATE, status=200)
            if r["params"].get("payment_intent") == payment["stripe_payment_intent_id"] and not r["replayed"]]


async def test_full_refund_without_amount(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "19.99")
    response = await refund(merchant, payment["id"], reason="requested_by_customer")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["amount"] == "19.99" and body["currency"] == "usd"
    assert body["status"] == "succeeded" and body["reason"] == "requested_by_customer"
    assert body["payment_id"] == payment["id"]
    assert set(body) >= {"id", "payment_id", "amount", "currency", "status", "reason", "created_at"}

    detail = await get(merchant, payment["id"])
    assert detail["status"] == "refunded" and detail["amount_refunded"] == "19.99"
    assert [r["id"] for r in detail["refunds"]] == [body["id"]]
    assert [(e["from"], e["to"], e["source"]) for e in detail["events"]][-1] == ("succeeded", "refunded", "api")

    # Stripe saw one refund, keyed by our refund id.
    [sent] = stripe_refunds(sim, payment)
    assert sent["idempotency_key"] == f"paymentd:{payment['id']}:refund:{body['id']}"
    assert sent["params"]["amount"] == 1999

    again = await refund(merchant, payment["id"])
    assert again.status_code == 409 and again.json()["error"]["code"] == "amount_exceeds_refundable"


async def test_partial_refunds_repeat_up_to_the_captured_amount(merchant: Merchant) -> None:
    payment = await paid(merchant, "50.00")
    first = await refund(merchant, payment["id"], amount="10.00")
    assert first.status_code == 201, first.text
    detail = await get(merchant, payment["id"])
    assert detail["status"] == "partially_refunded" and detail["amount_refunded"] == "10.00"

    second = await refund(merchant, payment["id"], amount=15.5)  # a JSON number, parsed exactly
    assert second.status_code == 201 and second.json()["amount"] == "15.50"
    over = await refund(merchant, payment["id"], amount="24.51")
    assert over.status_code == 409
    assert over.json()["error"]["code"] == "amount_exceeds_refundable"
    assert over.json()["error"]["param"] == "amount"

    rest = await refund(merchant, payment["id"])
    assert rest.status_code == 201 and rest.json()["amount"] == "24.50"
    detail = await get(merchant, payment["id"])
    assert detail["status"] == "refunded" and detail["amount_refunded"] == "50.00"
    assert [r["amount"] for r in detail["refunds"]] == ["10.00", "15.50", "24.50"]
    assert [e["to"] for e in detail["events"]][-2:] == ["partially_refunded", "refunded"]


async def test_refund_of_a_partial_capture_is_limited_to_what_was_captured(merchant: Merchant) -> None:
    user = await merchant.user()
    created = (await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": "50.00", "capture_method": "manual"})).json()
    await merchant.client.post("/api/payments/confirm", json={"payment_id": created["id"],
                                                              "payment_method": "pm_card_visa"})
    uncaptured = await refund(merchant, created["id"])
    assert uncaptured.status_code == 409 and uncaptured.json()["error"]["code"] == "invalid_state"
    assert "cancel" in uncaptured.json()["error"]["message"]
    captured = await merchant.client.post("/api/payments/capture", json={"payment_id": created["id"],
                                                                          "amount": "30.00"})
    assert captured.json()["status"] == "succeeded"
    too_much = await refund(merchant, created["id"], amount="30.01")
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "amount_exceeds_refundable"
    everything = await refund(merchant, created["id"])
    assert everything.status_code == 201 and everything.json()["amount"] == "30.00"
    assert (await get(merchant, created["id"]))["status"] == "refunded"


@pytest.mark.parametrize(
    ("amount", "status", "code"),
    [
        ("0", 400, "amount_invalid"),
        ("0.00", 400, "amount_invalid"),
        ("-1.00", 400, "amount_invalid"),
        (-5, 400, "amount_invalid"),
        ("1.001", 400, "amount_too_precise"),
        ("abc", 400, "amount_invalid"),
        ("100.01", 409, "amount_exceeds_refundable"),
    ],
)
async def test_bad_amounts_are_refused_and_nothing_is_written(  # type: ignore[no-untyped-def]
    merchant: Merchant, sim, amount, status, code
) -> None:
    payment = await paid(merchant, "100.00")
    response = await refund(merchant, payment["id"], amount=amount)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["type"] == "invalid_request_error"
    detail = await get(merchant, payment["id"])
    assert detail["refunds"] == [] and detail["status"] == "succeeded"
    assert stripe_refunds(sim, payment) == []


async def test_other_refusals(merchant: Merchant, database: Database, paymentd, sim) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "10.00")
    bad_reason = await refund(merchant, payment["id"], reason="because")
    assert bad_reason.status_code == 400
    unknown_field = await refund(merchant, payment["id"], amount="1.00", note="x")
    assert unknown_field.status_code == 400
    missing = await refund(merchant, str(uuid.uuid4()))
    assert missing.status_code == 404

    # Another account's payment is as absent as a missing one.
    _, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {other_key}"}) as other:
        theirs = await other.post("/api/payments/refund", json={"payment_id": payment["id"]})
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "resource_missing"

    # A key without refunds:write.
    _, reader = await make_key(database, f"reader-{uuid.uuid4().hex[:8]}", [Scope.payments_read,
                                                                             Scope.payments_write])
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {reader}"}) as client:
        forbidden = await client.post("/api/payments/refund", json={"payment_id": payment["id"]})
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "permission_error"

    # A payment not paid yet.
    user = await merchant.user()
    pending = (await merchant.client.post("/api/payments/create", json={"user_id": user["id"],
                                                                         "amount": "5.00"})).json()
    not_yet = await refund(merchant, pending["id"])
    assert not_yet.status_code == 409 and not_yet.json()["error"]["code"] == "invalid_state"

    assert (await get(merchant, payment["id"]))["refunds"] == []
    assert stripe_refunds(sim, payment) == [] and stripe_refunds(sim, pending) == []


async def test_concurrent_partial_refunds_never_exceed_the_amount(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "100.00")
    # 20 x 7.00 = 140.00 asked for 100.00 captured: exactly 14 fit.
    # Prefer: wait so each answer is final (under load some would otherwise be 202 pending).
    responses = await asyncio.gather(*(
        merchant.client.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "7.00"},
                             headers={"Prefer": "wait=20"})
        for _ in range(20)
    ))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 14 + [409] * 6, [r.text for r in responses if r.status_code not in (201, 409)]
    assert all(r.json()["error"]["code"] == "amount_exceeds_refundable" for r in responses if r.status_code == 409)

    detail = await get(merchant, payment["id"])
    assert len(detail["refunds"]) == 14 and detail["amount_refunded"] == "98.00"
    assert detail["status"] == "partially_refunded"
    assert len(stripe_refunds(sim, payment)) == 14  # the excess never reached Stripe

    last = await refund(merchant, payment["id"])
    assert last.json()["amount"] == "2.00"
    assert (await get(merchant, payment["id"]))["status"] == "refunded"


async def test_idempotent_refund_is_replayed(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "30.00")
    headers = {"Idempotency-Key": f"refund-{uuid.uuid4()}"}
    body = {"payment_id": payment["id"], "amount": "5.00"}
    first = await merchant.client.post("/api/payments/refund", json=body, headers=headers)
    second = await merchant.client.post("/api/payments/refund", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.json()["id"] == second.json()["id"]
    assert len(stripe_refunds(sim, payment)) == 1
    assert len((await get(merchant, payment["id"]))["refunds"]) == 1


async def test_slow_stripe_answers_202_pending_then_settles(merchant: Merchant, sim_config, sim) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "40.00")
    sim_config(latency_by_operation={REFUND_CREATE: {"latency_ms": 2500}})
    started = time.monotonic()
    response = await refund(merchant, payment["id"], amount="15.00")
    # Answered on the 400 ms budget, long before Stripe's 2.5 s (room for a loaded machine).
    assert time.monotonic() - started < 2.0
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"

    # The reserved amount already counts: more than the rest is refused meanwhile.
    over = await refund(merchant, payment["id"], amount="25.01")
    assert over.status_code == 409

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        detail = await get(merchant, payment["id"])
        if detail["refunds"][0]["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert detail["refunds"][0]["status"] == "succeeded"
    assert detail["status"] == "partially_refunded" and detail["amount_refunded"] == "15.00"


async def test_a_refund_that_fails_later_gives_the_amount_back(merchant: Merchant, sim, settings) -> None:  # type: ignore[no-untyped-def]
    payment = await paid(merchant, "20.00", pm="pm_card_refundFail")
    response = await refund(merchant, payment["id"], amount="8.00")
    assert response.status_code == 201 and response.json()["status"] == "succeeded"
    refund_id = response.json()["id"]
    provider = StripeProvider(SANDBOX_KEY, api_base=sim.url, webhook_secrets=[], max_network_retries=0, timeout=10)
    database = Database(settings.database_url, pool_size=2)
    try:
        async with database.transaction() as session:
            stripe_refund_id = (await session.get(Refund, uuid.UUID(refund_id))).provider_refund_id
        # The card fails its refunds after a delay; force it now (400: the timer was first).
        failed = httpx.post(f"{sim.url}/_sim/refunds/{stripe_refund_id}/fail")
        assert failed.status_code in (200, 400), failed.text
        # What the refund.failed webhook job does with the event's refund.
        reported = await provider.retrieve_refund(stripe_refund_id)
        assert reported.status == "failed"
        async with database.transaction() as session:
            assert await apply_refund_event(session, reported, WEBHOOK) == "applied"
        async with database.transaction() as session:  # a second delivery changes nothing
            assert await apply_refund_event(session, reported, WEBHOOK) == "applied"
    finally:
        await provider.aclose()
        await database.dispose()
    detail = await get(merchant, payment["id"])
    assert detail["refunds"][0]["status"] == "failed"
    assert detail["refunds"][0]["failure_reason"]
    assert detail["amount_refunded"] == "0.00"
    # The 8.00 is refundable again: all 20.00 can go now.
    again = await refund(merchant, payment["id"])
    assert again.status_code == 201 and again.json()["amount"] == "20.00"


async def test_stripe_failing_answers_202_and_keeps_the_amount_reserved(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    """Stripe 5xx past the SDK's retries: Stripe may have refunded, so the caller is told
    `202 pending`, not an error that a key-less retry would turn into a second refund."""
    payment = await paid(merchant, amount="10.00")
    httpx.post(f"{sim.url}/_sim/faults", json={"kind": "api_error", "count": 3, "operation": "POST /v1/refunds"})
    first = await refund(merchant, payment["id"], amount="10.00")
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "pending"
    again = await refund(merchant, payment["id"], amount="10.00")  # the careless retry, no key
    assert again.status_code == 409 and again.json()["error"]["code"] == "amount_exceeds_refundable"
