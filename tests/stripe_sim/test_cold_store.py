"""With almost every object packed (hot_objects=1), flows behave exactly as with all objects live."""

from __future__ import annotations

import pytest
import stripe


@pytest.fixture(autouse=True)
async def everything_cold(control):
    await control.post("/config", json={"hot_objects": 1})
    yield
    await control.post("/config", json={"hot_objects": 10_000})


async def test_full_flow_on_packed_objects(client, control):
    customer = await client.v1.customers.create_async(params={"email": "cold@example.com"})
    method = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": customer.id})
    pi = await client.v1.payment_intents.create_async(params={
        "amount": 5000, "currency": "usd", "customer": customer.id, "payment_method": method.id,
        "capture_method": "manual", "confirm": True, "metadata": {"k": "v"}})
    await client.v1.customers.create_async()  # push the first objects out of the hot set
    captured = await client.v1.payment_intents.capture_async(pi.id, params={"amount_to_capture": 4000})
    assert captured.status == "succeeded" and captured.amount_received == 4000
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 1000})
    assert refund.amount == 1000
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.amount_captured == 4000 and charge.amount_refunded == 2000  # 1000 released + 1000 refunded
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 3001})
    fetched = await client.v1.payment_intents.retrieve_async(pi.id, params={"expand": ["latest_charge",
                                                                                       "customer"]})
    assert fetched.latest_charge.id == charge.id and fetched.customer.email == "cold@example.com"
    assert fetched.metadata.to_dict() == {"k": "v"}
    listed = await client.v1.payment_intents.list_async(params={"customer": customer.id})
    assert [p.id for p in listed.data] == [pi.id]
    methods = await client.v1.customers.payment_methods.list_async(customer.id)
    assert [m.id for m in methods.data] == [method.id]
    stats = (await control.get("/stats")).json()
    assert stats["objects"]["payment_intents"] == 1
