"""Stripe's test cards: declines (402 card_error), 3-D Secure, raw numbers, tokens."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import event_types

DECLINES = [
    ("pm_card_chargeDeclined", "4000000000000002", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "4000000000009995", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "4000000000009987", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedStolenCard", "4000000000009979", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "4000000000000069", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "4000000000000127", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "4000000000000119", "processing_error", "processing_error"),
    ("pm_card_chargeDeclinedFraudulent", "4100000000000019", "card_declined", "fraudulent"),
    ("pm_card_chargeCustomerFail", "4000000000000341", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclinedVelocityLimitExceeded", "4000000000006975", "card_declined",
     "card_velocity_exceeded"),
    ("pm_card_radarBlock", "4100000000000019", "card_declined", "fraudulent"),
    ("pm_card_riskLevelHighest", "4000000000004954", "card_declined", "fraudulent"),
]


async def pay(client, payment_method, **params):
    return await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "payment_method": payment_method, "confirm": True, **params})


@pytest.mark.parametrize("pm, number, code, decline_code", DECLINES)
async def test_declining_test_methods(client, pm, number, code, decline_code):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, pm)
    e = err.value
    assert e.http_status == 402
    assert e.code == code and e.error.decline_code == decline_code
    body = e.json_body["error"]
    assert body["type"] == "card_error" and body["charge"].startswith("ch_")
    assert body["payment_method"]["card"]["last4"] == number[-4:]
    pi = body["payment_intent"]
    assert pi["status"] == "requires_payment_method" and pi["payment_method"] is None
    assert pi["last_payment_error"]["decline_code"] == decline_code
    assert pi["last_payment_error"]["code"] == code
    assert pi["last_payment_error"]["payment_method"]["id"] == body["payment_method"]["id"]
    assert pi["latest_charge"] == body["charge"]
    charge = await client.v1.charges.retrieve_async(body["charge"])
    assert charge.status == "failed" and charge.failure_code == code and not charge.paid
    assert await event_types(client) == ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"]


@pytest.mark.parametrize("pm, number, code, decline_code", DECLINES)
async def test_declining_card_numbers(client, pm, number, code, decline_code):
    method = await client.v1.payment_methods.create_async(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    assert method.card.last4 == number[-4:]
    with pytest.raises(stripe.CardError) as err:
        await pay(client, method.id)
    assert err.value.code == code and err.value.error.decline_code == decline_code


async def test_retry_after_decline_with_another_card(client):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, "pm_card_chargeDeclinedInsufficientFunds")
    pi_id = err.value.json_body["error"]["payment_intent"]["id"]
    pi = await client.v1.payment_intents.confirm_async(pi_id, params={"payment_method": "pm_card_visa"})
    assert pi.status == "succeeded" and pi.last_payment_error is None


@pytest.mark.parametrize("pm, brand, last4", [
    ("pm_card_visa", "visa", "4242"), ("pm_card_mastercard", "mastercard", "4444"),
    ("pm_card_amex", "amex", "0005"), ("pm_card_discover", "discover", "1117"),
    ("pm_card_visa_debit", "visa", "5556"),
])
async def test_succeeding_test_methods(client, pm, brand, last4):
    pi = await pay(client, pm, expand=["payment_method"])
    assert pi.status == "succeeded"
    assert pi.payment_method.card.brand == brand and pi.payment_method.card.last4 == last4


@pytest.mark.parametrize("number", ["4242424242424242", "5555555555554444", "378282246310005"])
async def test_succeeding_card_numbers(client, number):
    method = await client.v1.payment_methods.create_async(params={
        "type": "card", "card": {"number": number, "exp_month": 1, "exp_year": 2040}})
    assert (await pay(client, method.id)).status == "succeeded"


async def test_card_token(client):
    method = await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_visa"}})
    assert method.card.last4 == "4242"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_nope"}})
    assert err.value.code == "resource_missing"


async def test_incorrect_number(client):
    with pytest.raises(stripe.CardError) as err:
        await client.v1.payment_methods.create_async(params={
            "type": "card", "card": {"number": "4242424242424241", "exp_month": 12, "exp_year": 2034}})
    assert err.value.code == "incorrect_number"


async def test_expired_expiry(client):
    with pytest.raises(stripe.CardError) as err:
        await client.v1.payment_methods.create_async(params={
            "type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2020}})
    assert err.value.code == "invalid_expiry_year"


async def test_live_card_in_test_mode(client):
    with pytest.raises(stripe.CardError) as err:
        await client.v1.payment_methods.create_async(params={
            "type": "card", "card": {"number": "4111111111111111", "exp_month": 12, "exp_year": 2034}})
    assert err.value.error.decline_code == "test_mode_live_card"


@pytest.mark.parametrize("pm", ["pm_card_threeDSecure2Required", "pm_card_authenticationRequired",
                                "pm_card_authenticationRequiredOnSetup"])
async def test_three_d_secure_succeeds_after_authentication(client, control, pm):
    pi = await pay(client, pm)
    assert pi.status == "requires_action"
    assert pi.next_action.type == "use_stripe_sdk"
    response = await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"})
    assert response.status_code == 200 and response.json()["status"] == "succeeded"
    after = await client.v1.payment_intents.retrieve_async(pi.id)
    assert after.status == "succeeded" and after.next_action is None and after.amount_received == 1000
    assert await event_types(client) == ["payment_intent.created", "payment_intent.requires_action",
                                         "charge.succeeded", "payment_intent.succeeded"]


async def test_three_d_secure_with_return_url_redirects(client, control):
    pi = await pay(client, "pm_card_threeDSecure2Required", return_url="https://shop.example/done")
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == "https://shop.example/done"
    url = pi.next_action.redirect_to_url.url
    assert url.startswith(control.base_url.scheme + "://")
    response = await control.get(url)
    assert response.status_code == 302
    assert response.headers["location"].startswith("https://shop.example/done?payment_intent=" + pi.id)
    assert "redirect_status=succeeded" in response.headers["location"]


async def test_three_d_secure_failure(client, control):
    pi = await pay(client, "pm_card_threeDSecure2Required", capture_method="manual")
    response = await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "fail"})
    assert response.status_code == 200
    after = await client.v1.payment_intents.retrieve_async(pi.id)
    assert after.status == "requires_payment_method"
    assert after.last_payment_error.code == "payment_intent_authentication_failure"
    assert after.last_payment_error.payment_method.card.last4 == "3220"
    assert (await event_types(client))[-1] == "payment_intent.payment_failed"


async def test_authenticate_needs_requires_action(client, control):
    pi = await pay(client, "pm_card_visa")
    response = await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payment_intent_unexpected_state"
    bad = await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "maybe"})
    assert bad.status_code == 400
    missing = await control.post("/payment_intents/pi_nope/authenticate", json={})
    assert missing.status_code == 404


async def test_off_session_authentication_required(client):
    customer = await client.v1.customers.create_async()
    method = await client.v1.payment_methods.attach_async("pm_card_authenticationRequired",
                                                           params={"customer": customer.id})
    with pytest.raises(stripe.CardError) as err:
        await pay(client, method.id, customer=customer.id, off_session=True)
    assert err.value.code == "authentication_required"
    assert err.value.error.decline_code == "authentication_required"


async def test_saved_card_needing_setup_auth_works_off_session(client):
    customer = await client.v1.customers.create_async()
    method = await client.v1.payment_methods.attach_async("pm_card_authenticationRequiredOnSetup",
                                                           params={"customer": customer.id})
    pi = await pay(client, method.id, customer=customer.id, off_session=True)
    assert pi.status == "succeeded"
    on_session = await pay(client, method.id, customer=customer.id)
    assert on_session.status == "requires_action"
