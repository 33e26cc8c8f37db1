"""Refunds (never beyond what was captured), the refund-fails-later card, and disputes."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import event_types, eventually


async def paid(client, pm="pm_card_visa", amount=1000, **params):
    return await client.v1.payment_intents.create_async(params={
        "amount": amount, "currency": "usd", "payment_method": pm, "confirm": True, **params})


async def test_full_refund(client):
    pi = await paid(client)
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id, "reason": "requested_by_customer"})
    assert refund.status == "succeeded" and refund.amount == 1000
    assert refund.charge == pi.latest_charge and refund.payment_intent == pi.id
    assert refund.reason == "requested_by_customer"
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.refunded and charge.amount_refunded == 1000
    assert (await event_types(client))[-2:] == ["refund.created", "charge.refunded"]


async def test_partial_refunds_up_to_the_captured_amount(client):
    pi = await paid(client)
    await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 400})
    await client.v1.refunds.create_async(params={"charge": pi.latest_charge, "amount": 500})
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 101})
    assert err.value.code == "amount_too_large" and err.value.param == "amount"
    assert "Refund amount ($1.01) is greater than unrefunded amount on charge ($1.00)" in err.value.user_message
    last = await client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert last.amount == 100
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 1})
    assert err.value.code == "charge_already_refunded"
    listed = await client.v1.refunds.list_async(params={"payment_intent": pi.id})
    assert [r.amount for r in listed.data] == [100, 500, 400]
    by_charge = await client.v1.refunds.list_async(params={"charge": pi.latest_charge, "limit": 1})
    assert by_charge.has_more and by_charge.data[0].amount == 100


async def test_refund_after_partial_capture_is_limited_to_captured(client):
    pi = await paid(client, capture_method="manual")
    await client.v1.payment_intents.capture_async(pi.id, params={"amount_to_capture": 600})
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 601})
    assert err.value.code == "amount_too_large"
    assert (await client.v1.refunds.create_async(params={"payment_intent": pi.id})).amount == 600


async def test_uncaptured_or_failed_payments_cannot_be_refunded(client):
    pi = await paid(client, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert err.value.code == "charge_not_refundable"
    with pytest.raises(stripe.CardError) as declined:
        await paid(client, "pm_card_chargeDeclined")
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"charge": declined.value.json_body["error"]["charge"]})
    assert err.value.code == "charge_not_refundable"


async def test_refund_needs_a_target(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"amount": 100})
    assert err.value.code == "parameter_missing"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": "pi_nope"})
    assert err.value.code == "resource_missing"


async def test_refund_update_and_retrieve(client):
    pi = await paid(client)
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id, "metadata": {"a": "1"}})
    updated = await client.v1.refunds.update_async(refund.id, params={"metadata": {"b": "2"}})
    assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
    assert (await client.v1.refunds.retrieve_async(refund.id)).metadata.to_dict() == {"a": "1", "b": "2"}


async def test_refund_fails_later_on_card_5126(client):
    pi = await paid(client, "pm_card_refundFail")
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert refund.status == "succeeded"

    async def failed():
        return (await client.v1.refunds.retrieve_async(refund.id)).status == "failed"

    await eventually(failed)
    after = await client.v1.refunds.retrieve_async(refund.id)
    assert after.failure_reason == "expired_or_canceled_card"
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.amount_refunded == 0 and not charge.refunded
    failed_events = await client.v1.events.list_async(params={"type": "refund.failed"})
    assert [e.data.object.id for e in failed_events.data] == [refund.id]


async def test_refund_fail_endpoint(client, control):
    pi = await paid(client)
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 300})
    response = await control.post(f"/refunds/{refund.id}/fail")
    assert response.json()["status"] == "failed"
    assert (await control.post(f"/refunds/{refund.id}/fail")).status_code == 400


async def test_bank_refund_is_pending_then_succeeds(client):
    pi = await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "eur", "confirm": True, "payment_method_data": {
            "type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"},
            "billing_details": {"name": "J R", "email": "j@example.com"}}})

    async def settled():
        return (await client.v1.payment_intents.retrieve_async(pi.id)).status == "succeeded"

    await eventually(settled)
    refund = await client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert refund.status == "pending"

    async def done():
        return (await client.v1.refunds.retrieve_async(refund.id)).status == "succeeded"

    await eventually(done)


async def test_dispute_lifecycle(client, control):
    pi = await paid(client)
    opened = await control.post(f"/charges/{pi.latest_charge}/dispute", json={"reason": "product_not_received"})
    dispute = opened.json()
    assert dispute["status"] == "needs_response" and dispute["amount"] == 1000
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.disputed
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.refunds.create_async(params={"payment_intent": pi.id})
    assert err.value.code == "charge_disputed"
    closed = await control.post(f"/disputes/{dispute['id']}/close", json={"outcome": "won"})
    assert closed.json()["status"] == "won"
    assert (await client.v1.disputes.retrieve_async(dispute["id"])).status == "won"
    assert (await event_types(client))[-4:] == ["charge.dispute.created", "charge.dispute.funds_withdrawn",
                                                "charge.dispute.closed", "charge.dispute.funds_reinstated"]
    assert (await control.post(f"/disputes/{dispute['id']}/close", json={"outcome": "lost"})).status_code == 400


async def test_merchant_accepting_a_dispute_loses_it(client, control):
    pi = await paid(client)
    dispute = (await control.post(f"/charges/{pi.latest_charge}/dispute", json={})).json()
    closed = await client.v1.disputes.close_async(dispute["id"])
    assert closed.status == "lost" and closed.reason == "fraudulent"
    listed = await client.v1.disputes.list_async(params={"charge": pi.latest_charge})
    assert [d.id for d in listed.data] == [dispute["id"]]


async def test_dispute_card_opens_a_dispute_by_itself(client):
    pi = await paid(client, "pm_card_createDispute")

    async def disputed():
        return (await client.v1.disputes.list_async(params={"payment_intent": pi.id})).data

    found = await eventually(disputed)
    assert found[0].charge == pi.latest_charge and found[0].reason == "fraudulent"


async def test_cannot_dispute_uncaptured(client, control):
    pi = await paid(client, capture_method="manual")
    response = await control.post(f"/charges/{pi.latest_charge}/dispute", json={})
    assert response.status_code == 400
