"""Stripe Radar in the simulator: charge outcomes, the Radar test instruments, reviews, early fraud warnings."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import Receiver, event_types, eventually

BLOCKED = {"network_status": "not_sent_to_network", "reason": "highest_risk_level", "risk_level": "highest",
           "risk_score": 95, "seller_message": "Stripe blocked this payment as too risky.", "type": "blocked"}
# (test PaymentMethod, card number, the rule Radar names, if any)
BLOCKING = [("radarBlock", "4100000000000019", None), ("chargeDeclinedFraudulent", "4100000000000019", None),
            ("riskLevelHighest", "4000000000004954", "block_if_high_risk")]


async def pay(client, payment_method, **params):
    return await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "payment_method": payment_method, "confirm": True, **params})


async def card_from_number(client, number):
    return (await client.v1.payment_methods.create_async(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})).id


async def method(client, how, name, number):
    """The same test instrument three ways: `pm_card_*` id, `tok_*` token, raw card number."""
    if how == "pm":
        return f"pm_card_{name}"
    if how == "tok":
        return (await client.v1.payment_methods.create_async(params={
            "type": "card", "card": {"token": f"tok_{name}"}})).id
    return await card_from_number(client, number)


def outcome_of(charge) -> dict:
    return charge.outcome.to_dict()


@pytest.mark.parametrize("how", ["pm", "tok", "number"])
@pytest.mark.parametrize("name, number, rule", BLOCKING)
async def test_radar_blocks_highest_risk(client, how, name, number, rule):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, await method(client, how, name, number))
    body = err.value.json_body["error"]
    assert (err.value.http_status, body["code"], body["decline_code"]) == (402, "card_declined", "fraudulent")
    assert body["payment_intent"]["status"] == "requires_payment_method"
    assert body["payment_intent"]["last_payment_error"]["decline_code"] == "fraudulent"
    charge = await client.v1.charges.retrieve_async(body["charge"])
    assert charge.status == "failed" and not charge.paid and charge.failure_code == "card_declined"
    outcome = outcome_of(charge)
    assert {k: outcome[k] for k in BLOCKED} == BLOCKED
    assert outcome.get("rule") == rule
    assert charge.fraud_details.to_dict() == {"stripe_report": "fraudulent"}
    assert charge.review is None
    assert await event_types(client) == ["payment_intent.created", "charge.failed", "payment_intent.payment_failed"]


@pytest.mark.parametrize("how", ["pm", "tok", "number"])
async def test_elevated_risk_succeeds_and_opens_a_review(client, how):
    pi = await pay(client, await method(client, how, "riskLevelElevated", "4000000000009235"),
                   expand=["latest_charge"])
    assert pi.status == "succeeded" and pi.review and pi.review.startswith("prv_")
    charge = pi.latest_charge
    assert charge.status == "succeeded" and charge.paid and charge.review == pi.review
    assert outcome_of(charge) == {
        "advice_code": None, "network_advice_code": None, "network_decline_code": None,
        "network_status": "approved_by_network", "reason": "elevated_risk_level", "risk_level": "elevated",
        "risk_score": 68, "rule": "manual_review_if_elevated_risk", "type": "manual_review",
        "seller_message": "Stripe evaluated this payment as having elevated risk, and placed it in your manual "
                          "review queue."}
    review = await client.v1.reviews.retrieve_async(pi.review)
    assert (review.open, review.opened_reason, review.reason, review.closed_reason) == (True, "rule", "rule", None)
    assert (review.charge, review.payment_intent, review.livemode) == (charge.id, pi.id, False)
    types = await event_types(client)
    assert types[-4:] == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded", "review.opened"]


@pytest.mark.parametrize("how", ["pm", "tok", "number"])
async def test_early_fraud_warning_card_succeeds_then_is_warned(client, how):
    pi = await pay(client, await method(client, how, "createIssuerFraudRecord", "4000000000005423"),
                   expand=["latest_charge"])
    assert pi.status == "succeeded" and pi.review is None
    assert outcome_of(pi.latest_charge)["type"] == "authorized"

    async def warned():
        page = await client.v1.radar.early_fraud_warnings.list_async(params={"charge": pi.latest_charge.id})
        return page.data

    [warning] = await eventually(warned)
    assert (warning.object, warning.actionable, warning.charge, warning.payment_intent, warning.fraud_type,
            warning.livemode) == ("radar.early_fraud_warning", True, pi.latest_charge.id, pi.id, "misc", False)
    assert warning.id.startswith("issfr_") and warning.created >= pi.created
    types = await event_types(client)
    assert types.index("radar.early_fraud_warning.created") > types.index("payment_intent.succeeded")
    assert (await client.v1.radar.early_fraud_warnings.retrieve_async(warning.id)).id == warning.id


async def test_normal_card_outcome_has_no_rule_and_no_review(client):
    pi = await pay(client, "pm_card_visa", expand=["latest_charge"])
    outcome = outcome_of(pi.latest_charge)
    assert (outcome["type"], outcome["risk_level"], outcome["risk_score"], outcome["reason"],
            outcome["network_status"], outcome["seller_message"]) == (
        "authorized", "normal", 32, None, "approved_by_network", "Payment complete.")
    assert "rule" not in outcome and pi.review is None and pi.latest_charge.fraud_details.to_dict() == {}
    assert (await client.v1.reviews.list_async()).data == []


@pytest.mark.parametrize("pm, reason, message", [
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "insufficient_funds",
     "The bank returned the decline code `insufficient_funds`."),
    ("pm_card_visa_chargeDeclined", "generic_decline",
     "The bank did not return any further details with this decline."),
])
async def test_issuer_decline_outcome_carries_the_bank_decline_code(client, pm, reason, message):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, pm)
    outcome = outcome_of(await client.v1.charges.retrieve_async(err.value.json_body["error"]["charge"]))
    assert (outcome["type"], outcome["network_status"], outcome["reason"], outcome["seller_message"],
            outcome["risk_level"]) == ("issuer_declined", "declined_by_network", reason, message, "normal")


async def test_bank_redirect_payments_are_not_assessed(client, control):
    pi = await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "eur", "payment_method_data": {"type": "ideal"}, "confirm": True,
        "return_url": "https://example.com/back"})
    await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"})
    pi = await client.v1.payment_intents.retrieve_async(pi.id, params={"expand": ["latest_charge"]})
    outcome = outcome_of(pi.latest_charge)
    assert outcome["risk_level"] == "not_assessed" and "risk_score" not in outcome


@pytest.mark.parametrize("pm, code, decline_code", [
    ("pm_card_visa_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_visa_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_visa_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_visa_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_visa_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_visa_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_visa_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
    ("pm_card_visa_chargeDeclinedVelocityLimitExceeded", "card_declined", "card_velocity_exceeded"),
    ("pm_card_chargeDeclinedVelocityLimitExceeded", "card_declined", "card_velocity_exceeded"),
])
async def test_visa_decline_ids_give_their_codes(client, pm, code, decline_code):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, pm)
    assert (err.value.code, err.value.error.decline_code) == (code, decline_code)
    assert err.value.json_body["error"]["payment_intent"]["status"] == "requires_payment_method"


async def test_velocity_card_by_number_and_its_message(client):
    with pytest.raises(stripe.CardError) as err:
        await pay(client, await card_from_number(client, "4000000000006975"))
    assert err.value.error.decline_code == "card_velocity_exceeded"
    assert err.value.user_message == ("Your card was declined for making repeated attempts too frequently or "
                                      "exceeding its amount limit.")


# --- reviews -------------------------------------------------------------------------------------------


async def test_review_does_not_block_capture_and_approve_closes_it(client):
    pi = await pay(client, "pm_card_riskLevelElevated", capture_method="manual")
    assert pi.status == "requires_capture" and pi.review
    assert [r.id for r in (await client.v1.reviews.list_async()).data] == [pi.review]
    captured = await client.v1.payment_intents.capture_async(pi.id)
    assert captured.status == "succeeded"
    assert (await client.v1.reviews.retrieve_async(pi.review)).open  # capturing is not approving
    approved = await client.v1.reviews.approve_async(pi.review)
    assert (approved.open, approved.reason, approved.closed_reason) == (False, "approved", "approved")
    assert (await client.v1.reviews.list_async()).data == []  # Stripe lists only open reviews
    closed = (await client.v1.events.list_async(params={"type": "review.closed"})).data
    assert len(closed) == 1 and closed[0].data.object.id == pi.review
    assert closed[0].data.previous_attributes.to_dict() == {"closed_reason": None, "open": True, "reason": "rule"}
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.reviews.approve_async(pi.review)
    assert err.value.http_status == 400 and "already been closed" in err.value.user_message
    assert len((await client.v1.events.list_async(params={"type": "review.closed"})).data) == 1


async def test_approving_an_uncaptured_review_leaves_it_to_capture(client):
    pi = await pay(client, "pm_card_riskLevelElevated", capture_method="manual")
    await client.v1.reviews.approve_async(pi.review)
    assert (await client.v1.payment_intents.retrieve_async(pi.id)).status == "requires_capture"


@pytest.mark.parametrize("cancellation_reason, closed_reason", [
    ("fraudulent", "refunded_as_fraud"), ("requested_by_customer", "refunded"), (None, "refunded")])
async def test_canceling_an_authorization_in_review_closes_the_review(client, cancellation_reason, closed_reason):
    pi = await pay(client, "pm_card_riskLevelElevated", capture_method="manual")
    params = {"cancellation_reason": cancellation_reason} if cancellation_reason else {}
    canceled = await client.v1.payment_intents.cancel_async(pi.id, params=params)
    assert canceled.status == "canceled" and canceled.review == pi.review
    review = await client.v1.reviews.retrieve_async(pi.review)
    assert (review.open, review.closed_reason, review.reason) == (False, closed_reason, closed_reason)
    assert (await event_types(client))[-1] == "review.closed"


@pytest.mark.parametrize("reason, closed_reason", [("fraudulent", "refunded_as_fraud"), ("duplicate", "refunded")])
async def test_full_refund_closes_the_review_partial_does_not(client, reason, closed_reason):
    pi = await pay(client, "pm_card_riskLevelElevated")
    await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 400, "reason": reason})
    assert (await client.v1.reviews.retrieve_async(pi.review)).open
    await client.v1.refunds.create_async(params={"payment_intent": pi.id, "reason": reason})
    review = await client.v1.reviews.retrieve_async(pi.review)
    assert (review.open, review.closed_reason) == (False, closed_reason)


async def test_dispute_closes_the_review(client, control):
    pi = await pay(client, "pm_card_riskLevelElevated")
    response = await control.post(f"/charges/{pi.latest_charge}/dispute", json={})
    assert response.status_code == 200
    review = await client.v1.reviews.retrieve_async(pi.review)
    assert (review.open, review.closed_reason) == (False, "disputed")


async def test_missing_review_is_404(client):
    for call in (client.v1.reviews.retrieve_async, client.v1.reviews.approve_async):
        with pytest.raises(stripe.InvalidRequestError) as err:
            await call("prv_missing")
        assert err.value.http_status == 404 and err.value.code == "resource_missing"
        assert err.value.param == "review"


async def test_review_list_pages_and_expands(client):
    ids = [(await pay(client, "pm_card_riskLevelElevated")).review for _ in range(3)]
    first = await client.v1.reviews.list_async(params={"limit": 2, "expand": ["data.payment_intent"]})
    assert [r.id for r in first.data] == ids[::-1][:2] and first.has_more
    assert first.data[0].payment_intent.review == ids[-1]
    rest = await client.v1.reviews.list_async(params={"starting_after": first.data[-1].id})
    assert [r.id for r in rest.data] == [ids[0]] and not rest.has_more
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.reviews.list_async(params={"status": "open"})  # not a Stripe parameter


# --- early fraud warnings ------------------------------------------------------------------------------


async def _warning_for(client, pi_id):
    async def found():
        return (await client.v1.radar.early_fraud_warnings.list_async(params={"payment_intent": pi_id})).data

    return (await eventually(found))[0]


async def test_full_refund_makes_the_warning_not_actionable(client):
    pi = await pay(client, "pm_card_createIssuerFraudRecord")
    warning = await _warning_for(client, pi.id)
    await client.v1.refunds.create_async(params={"payment_intent": pi.id, "amount": 300})
    assert (await client.v1.radar.early_fraud_warnings.retrieve_async(warning.id)).actionable
    await client.v1.refunds.create_async(params={"payment_intent": pi.id, "reason": "fraudulent"})
    assert not (await client.v1.radar.early_fraud_warnings.retrieve_async(warning.id)).actionable
    updated = (await client.v1.events.list_async(params={"type": "radar.early_fraud_warning.updated"})).data
    assert len(updated) == 1 and updated[0].data.object.actionable is False
    assert updated[0].data.previous_attributes.to_dict() == {"actionable": True}


async def test_dispute_makes_the_warning_not_actionable(client, control):
    pi = await pay(client, "pm_card_createIssuerFraudRecord")
    warning = await _warning_for(client, pi.id)
    await control.post(f"/charges/{pi.latest_charge}/dispute", json={"reason": "fraudulent"})
    assert not (await client.v1.radar.early_fraud_warnings.retrieve_async(warning.id)).actionable


async def test_manual_capture_is_warned_only_after_capture(client, control):
    await control.post("/config", json={"early_fraud_warning_delay_ms": 0})
    pi = await pay(client, "pm_card_createIssuerFraudRecord", capture_method="manual")
    await pay(client, "pm_card_visa")  # a request later: a timer of 0 ms would have fired by now
    assert (await client.v1.radar.early_fraud_warnings.list_async()).data == []
    await client.v1.payment_intents.capture_async(pi.id)
    assert (await _warning_for(client, pi.id)).charge == pi.latest_charge


async def test_warning_list_filters(client, control):
    one = await pay(client, "pm_card_visa")
    two = await pay(client, "pm_card_visa")
    for pi in (one, two):
        response = await control.post(f"/charges/{pi.latest_charge}/early_fraud_warning",
                                      json={"fraud_type": "made_with_stolen_card"})
        assert response.status_code == 200 and response.json()["fraud_type"] == "made_with_stolen_card"
    warnings = client.v1.radar.early_fraud_warnings
    assert len((await warnings.list_async()).data) == 2
    assert [w.charge for w in (await warnings.list_async(params={"charge": one.latest_charge})).data] == [
        one.latest_charge]
    assert [w.payment_intent for w in (await warnings.list_async(params={"payment_intent": two.id})).data] == [
        two.id]
    assert (await warnings.list_async(params={"charge": one.latest_charge, "payment_intent": two.id})).data == []
    assert (await warnings.list_async(params={"charge": "ch_nothing"})).data == []
    with pytest.raises(stripe.InvalidRequestError) as err:
        await warnings.retrieve_async("issfr_missing")
    assert err.value.http_status == 404


async def test_control_warning_refuses_bad_requests(client, control):
    uncaptured = await pay(client, "pm_card_visa", capture_method="manual")
    paid = await pay(client, "pm_card_visa")
    for path, body, status in [(f"/charges/{uncaptured.latest_charge}/early_fraud_warning", {}, 400),
                               (f"/charges/{paid.latest_charge}/early_fraud_warning", {"fraud_type": "x"}, 400),
                               ("/charges/ch_missing/early_fraud_warning", {}, 404)]:
        response = await control.post(path, json=body)
        assert response.status_code == status, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert (await client.v1.radar.early_fraud_warnings.list_async()).data == []


async def test_radar_events_are_signed_and_delivered(client, control):
    receiver = Receiver()
    try:
        endpoint = await client.v1.webhook_endpoints.create_async(params={
            "url": receiver.url, "enabled_events": ["review.opened", "review.closed",
                                                    "radar.early_fraud_warning.created",
                                                    "radar.early_fraud_warning.updated"]})
        await control.post("/config", json={"early_fraud_warning_delay_ms": 0})
        elevated = await pay(client, "pm_card_riskLevelElevated")
        await client.v1.reviews.approve_async(elevated.review)
        warned = await pay(client, "pm_card_createIssuerFraudRecord")
        await _warning_for(client, warned.id)
        await client.v1.refunds.create_async(params={"payment_intent": warned.id})

        async def all_four():
            return len(receiver.deliveries) >= 4

        await eventually(all_four)
        types = []
        for headers, body in receiver.deliveries:
            event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], endpoint.secret)
            types.append(event.type)
        assert sorted(types) == ["radar.early_fraud_warning.created", "radar.early_fraud_warning.updated",
                                 "review.closed", "review.opened"]
    finally:
        receiver.close()
