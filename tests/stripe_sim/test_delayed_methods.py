"""Bank debits that settle later (sepa_debit, us_bank_account) and redirect methods (ideal, bancontact)."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import event_types, eventually

SEPA_OK, SEPA_FAIL = "DE89370400440532013000", "DE62370400440532013001"
ACH_OK, ACH_FAIL = "000123456789", "000111111113"


def sepa(iban: str) -> dict:
    return {"type": "sepa_debit", "sepa_debit": {"iban": iban},
            "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"}}


def ach(account: str) -> dict:
    return {"type": "us_bank_account", "billing_details": {"name": "Jenny Rosen"},
            "us_bank_account": {"routing_number": "110000000", "account_number": account,
                                "account_holder_type": "individual"}}


async def pay(client, currency: str, method: dict, **params):
    return await client.v1.payment_intents.create_async(params={
        "amount": 1500, "currency": currency, "payment_method_data": method, "confirm": True,
        "mandate_data": {"customer_acceptance": {"type": "offline"}}, **params})


async def status_of(client, pi_id: str) -> str:
    return (await client.v1.payment_intents.retrieve_async(pi_id)).status


@pytest.mark.parametrize("currency, method", [("eur", sepa(SEPA_OK)), ("usd", ach(ACH_OK))])
async def test_debit_processes_then_succeeds(client, currency, method):
    pi = await pay(client, currency, method)
    assert pi.status == "processing" and pi.amount_received == 0
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.status == "pending" and not charge.paid
    await eventually(lambda: _is(client, pi.id, "succeeded"))
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.status == "succeeded" and charge.paid
    assert await event_types(client) == ["payment_intent.created", "charge.pending", "payment_intent.processing",
                                         "charge.succeeded", "payment_intent.succeeded"]


@pytest.mark.parametrize("currency, method, failure_code", [
    ("eur", sepa(SEPA_FAIL), "insufficient_funds"), ("usd", ach(ACH_FAIL), "account_closed")])
async def test_debit_processes_then_fails(client, currency, method, failure_code):
    pi = await pay(client, currency, method)
    assert pi.status == "processing"
    await eventually(lambda: _is(client, pi.id, "requires_payment_method"))
    after = await client.v1.payment_intents.retrieve_async(pi.id)
    assert after.last_payment_error.code == failure_code
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.status == "failed" and charge.failure_code == failure_code
    assert (await event_types(client))[-2:] == ["charge.failed", "payment_intent.payment_failed"]


async def test_settle_endpoint_forces_outcome(client, control):
    await control.post("/config", json={"settle_delay_ms": 60_000})
    ok = await pay(client, "eur", sepa(SEPA_OK))
    forced_fail = await pay(client, "eur", sepa(SEPA_OK))
    assert (await control.post(f"/payment_intents/{ok.id}/settle", json={})).json()["status"] == "succeeded"
    response = await control.post(f"/payment_intents/{forced_fail.id}/settle", json={"outcome": "fail"})
    assert response.json()["status"] == "requires_payment_method"
    assert (await control.post("/payment_intents/pi_nope/settle", json={})).status_code == 404


async def test_sepa_requires_name_and_email(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_methods.create_async(params={"type": "sepa_debit",
                                                             "sepa_debit": {"iban": SEPA_OK}})
    assert err.value.code == "parameter_missing" and err.value.param == "billing_details[name]"


async def test_sepa_rejects_bad_iban(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_methods.create_async(params=sepa("DE12"))
    assert err.value.param == "sepa_debit[iban]"


@pytest.mark.parametrize("pm_type", ["ideal", "bancontact"])
async def test_redirect_method(client, control, pm_type):
    pi = await pay(client, "eur", {"type": pm_type}, return_url="https://shop.example/back")
    assert pi.status == "requires_action"
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.return_url == "https://shop.example/back"
    assert pi.next_action.redirect_to_url.url
    response = await control.post(f"/payment_intents/{pi.id}/authenticate", json={"outcome": "succeed"})
    assert response.json()["status"] == "succeeded"


async def test_redirect_method_failure_via_redirect_page(client, control):
    pi = await pay(client, "eur", {"type": "ideal"}, return_url="https://shop.example/back")
    response = await control.get(pi.next_action.redirect_to_url.url, params={"outcome": "fail"})
    assert response.status_code == 302 and "redirect_status=failed" in response.headers["location"]
    after = await client.v1.payment_intents.retrieve_async(pi.id)
    assert after.status == "requires_payment_method"
    assert after.last_payment_error.code == "payment_intent_authentication_failure"


async def test_redirect_method_needs_return_url(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await pay(client, "eur", {"type": "ideal"})
    assert err.value.param == "return_url"


async def _is(client, pi_id: str, status: str) -> bool:
    return await status_of(client, pi_id) == status
