"""The payment lifecycle through paymentd's HTTP API, against the simulator over HTTP."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.conftest import Merchant


async def create(merchant: Merchant, user_id: str, **fields) -> dict:  # type: ignore[no-untyped-def]
    body = {"user_id": user_id, "amount": "19.99", **fields}
    response = await merchant.client.post("/api/payments/create", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def confirm(merchant: Merchant, payment_id: str, **fields) -> httpx.Response:  # type: ignore[no-untyped-def]
    return await merchant.client.post("/api/payments/confirm", json={"payment_id": payment_id, **fields})


async def get(merchant: Merchant, payment_id: str) -> dict:
    response = await merchant.client.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def test_create_then_confirm_succeeds(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    payment = await create(merchant, user["id"], currency="USD", metadata={"order": "42"})
    assert payment["status"] == "requires_payment_method"
    assert payment["amount"] == "19.99" and payment["currency"] == "usd"
    assert payment["stripe_payment_intent_id"].startswith("pi_")
    assert payment["client_secret"].startswith(payment["stripe_payment_intent_id"] + "_secret_")
    assert payment["metadata"] == {"order": "42"}

    response = await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.json()["amount_received"] == "19.99"

    detail = await get(merchant, payment["id"])
    assert [(e["from"], e["to"], e["source"]) for e in detail["events"]] == [
        (None, "requires_payment_method", "api"),
        ("requires_payment_method", "succeeded", "api"),
    ]
    assert detail["refunds"] == []

    # Stripe saw one create and one confirm, each with a key derived from the payment id.
    log = httpx.get(f"{sim.url}/_sim/requests").json()
    keys = [r["idempotency_key"] for r in log["data"] if payment["stripe_payment_intent_id"] in r["path"]
            or (r["idempotency_key"] or "").startswith(f"paymentd:{payment['id']}")]
    assert f"paymentd:{payment['id']}:create" in keys
    assert f"paymentd:{payment['id']}:confirm:1" in keys


async def test_amounts_follow_the_currency_exponent(merchant: Merchant) -> None:
    user = await merchant.user()
    jpy = await create(merchant, user["id"], amount=1000, currency="jpy")
    assert jpy["amount"] == "1000"
    kwd = await create(merchant, user["id"], amount="1.5", currency="KWD")
    assert kwd["amount"] == "1.500"


async def test_decline_then_retry_with_another_card(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = await create(merchant, user["id"], payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert payment["status"] == "requires_confirmation"

    declined = await confirm(merchant, payment["id"])
    assert declined.status_code == 402, declined.text
    error = declined.json()["error"]
    assert error["type"] == "card_error"
    assert error["decline_code"] == "insufficient_funds"
    assert error["payment_id"] == payment["id"]

    after = await get(merchant, payment["id"])
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"]["decline_code"] == "insufficient_funds"

    retried = await confirm(merchant, payment["id"], payment_method="pm_card_mastercard")
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "succeeded"
    assert retried.json()["last_payment_error"] is None
    moves = [(e["from"], e["to"]) for e in (await get(merchant, payment["id"]))["events"]]
    assert moves == [
        (None, "requires_confirmation"),
        ("requires_confirmation", "requires_payment_method"),
        ("requires_payment_method", "succeeded"),
    ]


async def test_three_d_secure_completed(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    payment = await create(merchant, user["id"])
    response = await confirm(
        merchant, payment["id"], payment_method="pm_card_threeDSecure2Required", return_url="https://shop.example/done"
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "requires_action"
    assert body["next_action"]["type"] in ("use_stripe_sdk", "redirect_to_url")

    # The customer passes the challenge on Stripe's page; reading the payment shows it moved on.
    done = httpx.post(
        f"{sim.url}/_sim/payment_intents/{payment['stripe_payment_intent_id']}/authenticate",
        json={"outcome": "succeed"},
    )
    assert done.status_code == 200, done.text
    after = await get(merchant, payment["id"])
    assert after["status"] == "succeeded"
    assert after["next_action"] is None
    assert [(e["to"], e["source"]) for e in after["events"]][-2:] == [
        ("requires_action", "api"),
        ("succeeded", "reconciler"),
    ]


async def test_three_d_secure_failed(merchant: Merchant, sim) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    payment = await create(merchant, user["id"], payment_method="pm_card_authenticationRequired")
    response = await confirm(merchant, payment["id"], return_url="https://shop.example/done")
    assert response.json()["status"] == "requires_action"
    failed = httpx.post(
        f"{sim.url}/_sim/payment_intents/{payment['stripe_payment_intent_id']}/authenticate",
        json={"outcome": "fail"},
    )
    assert failed.status_code == 200, failed.text
    after = await get(merchant, payment["id"])
    assert after["status"] == "requires_payment_method"
    assert after["last_payment_error"] is not None
    retried = await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    assert retried.status_code == 200 and retried.json()["status"] == "succeeded"


async def test_manual_capture_partial(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = await create(merchant, user["id"], amount="50.00", capture_method="manual")
    confirmed = await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    assert confirmed.json()["status"] == "requires_capture"
    assert confirmed.json()["amount_capturable"] == "50.00"

    too_much = await merchant.client.post(
        "/api/payments/capture", json={"payment_id": payment["id"], "amount": "50.01"}
    )
    assert too_much.status_code == 400
    assert too_much.json()["error"]["param"] == "amount"

    captured = await merchant.client.post(
        "/api/payments/capture", json={"payment_id": payment["id"], "amount": "30.00"}
    )
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_received"] == "30.00"


async def test_cancel_an_authorization(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = await create(merchant, user["id"], capture_method="manual")
    await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    canceled = await merchant.client.post(
        "/api/payments/cancel", json={"payment_id": payment["id"], "reason": "requested_by_customer"}
    )
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["amount_capturable"] == "0.00"


async def test_illegal_moves_are_refused(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = await create(merchant, user["id"])
    capture = await merchant.client.post("/api/payments/capture", json={"payment_id": payment["id"]})
    assert capture.status_code == 409
    assert capture.json()["error"]["code"] == "invalid_state"

    await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    again = await confirm(merchant, payment["id"], payment_method="pm_card_visa")
    assert again.status_code == 409 and again.json()["error"]["code"] == "invalid_state"
    cancel = await merchant.client.post("/api/payments/cancel", json={"payment_id": payment["id"]})
    assert cancel.status_code == 409 and cancel.json()["error"]["code"] == "invalid_state"
    assert (await get(merchant, payment["id"]))["status"] == "succeeded"


async def test_confirm_without_any_payment_method(merchant: Merchant) -> None:
    user = await merchant.user()
    payment = await create(merchant, user["id"])
    response = await confirm(merchant, payment["id"])
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "payment_method"
    assert (await get(merchant, payment["id"]))["events"][-1]["to"] == "requires_payment_method"


async def test_concurrent_confirms_of_one_payment_charge_it_once(merchant: Merchant, sim, database) -> None:  # type: ignore[no-untyped-def]
    """Twenty confirms at once, each its own request (no shared Idempotency-Key), all
    queued behind the payment's row lock: the first opens the attempt, every other one
    then finds it in progress or done. Without confirm's lock they would all pass the
    check and collide on attempt number 1."""
    user = await merchant.user()
    payment = await create(merchant, user["id"])
    async with database.sql_transaction() as conn:
        await conn.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", uuid.UUID(payment["id"]))
        pending = [asyncio.create_task(confirm(merchant, payment["id"], payment_method="pm_card_visa")) for _ in range(20)]
        await asyncio.sleep(0.5)  # let every request reach the lock
    answers = await asyncio.gather(*pending)

    # The one that got through waited on the lock past its budget, so it may answer 202.
    statuses = sorted(a.status_code for a in answers)
    assert statuses[1:] == [409] * 19 and statuses[0] in (200, 202), [a.text for a in answers]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} <= {"payment_in_progress", "invalid_state"}
    for _ in range(50):
        if (detail := await get(merchant, payment["id"]))["status"] == "succeeded":
            break
        await asyncio.sleep(0.1)
    assert detail["status"] == "succeeded"
    log = httpx.get(f"{sim.url}/_sim/requests").json()["data"]
    confirms = [r for r in log if r["path"] == f"/v1/payment_intents/{payment['stripe_payment_intent_id']}/confirm"]
    assert [r["idempotency_key"] for r in confirms] == [f"paymentd:{payment['id']}:confirm:1"]
    moves = [e["to"] for e in detail["events"]]  # `processing` between them when it answered 202
    assert moves[0] == "requires_payment_method" and moves[-1] == "succeeded" and moves.count("succeeded") == 1
