"""No request waits on Stripe past its budget: 202 with the payment as it stands,
the work finishes in the background, and GET shows the outcome."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import Merchant

CONFIRM = "POST /v1/payment_intents/{intent}/confirm"
CAPTURE = "POST /v1/payment_intents/{intent}/capture"
CANCEL = "POST /v1/payment_intents/{intent}/cancel"


async def new_payment(merchant: Merchant, **fields) -> dict:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    response = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "20", **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def settled(merchant: Merchant, payment_id: str, status: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await merchant.client.get(f"/api/payments/{payment_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"payment never reached {status}; last: {body['status']}")


async def test_slow_confirm_answers_202_then_succeeds(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    payment = await new_payment(merchant)
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 2000}})
    started = time.monotonic()
    response = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "processing"
    assert elapsed < 1.5, "the caller must not wait for Stripe's 2 s"

    done = await settled(merchant, payment["id"], "succeeded")
    assert [(e["from"], e["to"]) for e in done["events"]][-2:] == [
        ("requires_payment_method", "processing"),
        ("processing", "succeeded"),
    ]


async def test_create_spends_one_budget_on_the_database_and_stripe_together(  # type: ignore[no-untyped-def]
    merchant: Merchant, sim_config, database
) -> None:
    """The budget is fixed when the work starts: a create held up 1 s by the database
    (the users table locked) does not then wait another 0.4 s for a slow Stripe."""
    user = await merchant.user()
    sim_config(latency_by_operation={"POST /v1/payment_intents": {"latency_ms": 2000}})
    async with database.sql_transaction() as conn:
        await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")  # even a read of it waits
        started = time.monotonic()
        creating = asyncio.create_task(
            merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "20"}))
        await asyncio.sleep(1.0)
    response = await creating
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.text
    assert response.json()["stripe_payment_intent_id"] is None  # Stripe's answer comes later
    assert 1.0 <= elapsed < 1.3, f"{elapsed:.2f} s: the 0.4 s budget was spent again after the lock"


async def test_prefer_wait_waits_longer(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    payment = await new_payment(merchant)
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 1000}})
    response = await merchant.client.post(
        "/api/payments/confirm",
        json={"payment_id": payment["id"], "payment_method": "pm_card_visa"},
        headers={"Prefer": "wait=5"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"
    assert response.headers["preference-applied"] == "wait=5"


async def test_prefer_wait_is_capped(merchant: Merchant) -> None:
    payment = await new_payment(merchant)
    response = await merchant.client.post(
        "/api/payments/confirm",
        json={"payment_id": payment["id"], "payment_method": "pm_card_visa"},
        headers={"Prefer": "respond-async, wait=100000"},
    )
    assert response.status_code == 200
    assert response.headers["preference-applied"] == "wait=30"


async def test_decline_after_202_is_recorded(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    payment = await new_payment(merchant)
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 1500}})
    response = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_chargeDeclined"}
    )
    assert response.status_code == 202
    done = await settled(merchant, payment["id"], "requires_payment_method")
    assert done["last_payment_error"]["decline_code"] == "generic_decline"
    assert [e["to"] for e in done["events"]][-2:] == ["processing", "requires_payment_method"]


async def test_confirm_while_one_is_in_flight_is_409(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    payment = await new_payment(merchant)
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 1500}})
    body = {"payment_id": payment["id"], "payment_method": "pm_card_visa"}
    assert (await merchant.client.post("/api/payments/confirm", json=body)).status_code == 202
    second = await merchant.client.post("/api/payments/confirm", json=body)
    assert second.status_code == 409
    assert second.json()["error"]["code"] in ("payment_in_progress", "invalid_state")
    await settled(merchant, payment["id"], "succeeded")


async def test_slow_capture_and_cancel(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    to_capture = await new_payment(merchant, capture_method="manual")
    to_cancel = await new_payment(merchant, capture_method="manual")
    for payment in (to_capture, to_cancel):
        confirmed = await merchant.client.post(
            "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"}
        )
        assert confirmed.json()["status"] == "requires_capture"
    sim_config(latency_by_operation={CAPTURE: {"latency_ms": 1500}, CANCEL: {"latency_ms": 1500}})

    capture = await merchant.client.post("/api/payments/capture", json={"payment_id": to_capture["id"]})
    assert capture.status_code == 202 and capture.json()["status"] == "processing"
    cancel = await merchant.client.post("/api/payments/cancel", json={"payment_id": to_cancel["id"]})
    assert cancel.status_code == 202 and cancel.json()["status"] == "requires_capture"

    await settled(merchant, to_capture["id"], "succeeded")
    await settled(merchant, to_cancel["id"], "canceled")


async def test_refusal_after_202_frees_the_payment(merchant: Merchant, sim_config) -> None:  # type: ignore[no-untyped-def]
    """Stripe refuses the confirm after we answered 202: the payment does not stay
    `processing`; it says why and can be confirmed again."""
    payment = await new_payment(merchant)
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 1500}})
    response = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_doesNotExist"}
    )
    assert response.status_code == 202 and response.json()["status"] == "processing"
    done = await settled(merchant, payment["id"], "requires_payment_method")
    assert done["last_payment_error"]["type"] == "invalid_request_error"
    sim_config(latency_by_operation={})
    again = await merchant.client.post(
        "/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"}
    )
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
