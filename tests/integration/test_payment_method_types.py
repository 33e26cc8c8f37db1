"""Payment methods beyond cards, end to end through paymentd's HTTP API against the
simulator: bank debits (sepa_debit, us_bank_account) that settle or fail later by
webhook, and a redirect method (iDEAL) the customer completes on the bank's page."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from tests.conftest import Hooked, sim_requests
from tests.integration.test_webhooks import (
    confirm,
    eventually,
    moves,
    new_payment,
    status_of,
)

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
SEPA_OK, SEPA_FAIL = "DE89370400440532013000", "DE62370400440532013001"
ACH_OK, ACH_FAIL = "000123456789", "000111111113"
ACCEPTED_ONLINE = {"ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}


@pytest.fixture(autouse=True)
def banks_settle_on_request(hooked: Hooked) -> Iterator[None]:
    """Debits settle when the test says (/_sim/payment_intents/{id}/settle), not on a timer."""
    default = httpx.get(f"{hooked.sim.url}/_sim/config").json()["settle_delay_ms"]
    hooked.sim_post("/_sim/config", settle_delay_ms=600_000)
    yield
    hooked.sim_post("/_sim/config", settle_delay_ms=default)


def stripe_js(hooked: Hooked, **fields: str) -> str:
    """What Stripe.js does in the customer's browser: the method is created at Stripe,
    paymentd only ever sees its id."""
    response = httpx.post(f"{hooked.sim.url}/v1/payment_methods", headers=AUTH, data=fields)
    assert response.status_code == 200, response.text
    return response.json()["id"]


def sepa(hooked: Hooked, iban: str) -> str:
    return stripe_js(hooked, **{"type": "sepa_debit", "sepa_debit[iban]": iban,
                                "billing_details[name]": "Jenny Rosen", "billing_details[email]": "jenny@example.com"})


def ach(hooked: Hooked, account: str) -> str:
    return stripe_js(hooked, **{"type": "us_bank_account", "us_bank_account[routing_number]": "110000000",
                                "us_bank_account[account_number]": account,
                                "us_bank_account[account_holder_type]": "individual",
                                "billing_details[name]": "Jenny Rosen"})


async def detail(api: httpx.AsyncClient, payment_id: str) -> dict:
    response = await api.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def _status_is(database: Database, payment_id: str, wanted: str) -> bool:
    return await status_of(database, payment_id) == wanted


DEBITS = [
    pytest.param("sepa_debit", "eur", sepa, SEPA_OK, "SEPA Direct Debit ••••3000", id="sepa_debit"),
    pytest.param("us_bank_account", "usd", ach, ACH_OK, "STRIPE TEST BANK ••••6789", id="us_bank_account"),
]


@pytest.mark.parametrize(("kind", "currency", "method", "account", "label"), DEBITS)
async def test_a_bank_debit_processes_then_succeeds_by_webhook(
    hooked: Hooked, api, database, kind, currency, method, account, label
) -> None:
    payment = await new_payment(api, amount="15.00", currency=currency, payment_method_types=[kind])
    assert payment["payment_method_types"] == [kind]
    # The customer accepted the debit mandate in their browser; Stripe gets that acceptance.
    response = await api.post("/api/payments/confirm", json={
        "payment_id": payment["id"], "payment_method": method(hooked, account),
        "mandate_data": {"customer_acceptance": {"type": "online", "online": ACCEPTED_ONLINE}}})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "processing" and response.json()["next_action"] is None
    sent = sim_requests(hooked.sim, path=f"/v1/payment_intents/{payment['stripe_payment_intent_id']}/confirm")
    assert [r["params"]["mandate_data"] for r in sent] == [
        {"customer_acceptance": {"type": "online", "online": ACCEPTED_ONLINE}}]
    # Not yet a receipt: the money has not arrived.
    assert (await api.get(f"/api/payments/{payment['id']}/receipt")).status_code == 409

    hooked.sim_post(f"/_sim/payment_intents/{payment['stripe_payment_intent_id']}/settle")

    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))
    assert ("processing", "succeeded", "webhook") in await moves(database, payment["id"])
    shown = await detail(api, payment["id"])
    assert shown["amount_received"] == "15.00" and shown["last_payment_error"] is None
    receipt = (await api.get(f"/api/payments/{payment['id']}/receipt",
                             headers={"Accept": "application/json"})).json()
    assert receipt["payment_method"]["type"] == kind and receipt["payment_method"]["label"] == label
    assert receipt["payment_method"]["brand"] is None
    # Bank refunds are pending first, then settle.
    refund = await api.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "5.00"})
    assert refund.status_code == 201 and refund.json()["status"] == "pending", refund.text


@pytest.mark.parametrize(("kind", "currency", "method", "account", "code"), [
    pytest.param("sepa_debit", "eur", sepa, SEPA_FAIL, "insufficient_funds", id="sepa_debit"),
    pytest.param("us_bank_account", "usd", ach, ACH_FAIL, "account_closed", id="us_bank_account"),
])
async def test_a_bank_debit_that_fails_goes_back_to_requires_payment_method(
    hooked: Hooked, api, database, kind, currency, method, account, code
) -> None:
    payment = await new_payment(api, amount="15.00", currency=currency, payment_method_types=[kind])
    response = await confirm(api, payment["id"], method(hooked, account))
    assert response.json()["status"] == "processing", response.text

    hooked.sim_post(f"/_sim/payment_intents/{payment['stripe_payment_intent_id']}/settle")  # the bank decides

    await eventually(lambda: _status_is(database, payment["id"], "requires_payment_method"))
    assert ("processing", "requires_payment_method", "webhook") in await moves(database, payment["id"])
    shown = await detail(api, payment["id"])
    assert shown["last_payment_error"]["code"] == code and shown["amount_received"] == "0.00"
    assert (await api.get(f"/api/payments/{payment['id']}/receipt")).status_code == 409
    refused = await api.post("/api/payments/refund", json={"payment_id": payment["id"]})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_state"

    # The customer tries again with another account: it goes through.
    again = await confirm(api, payment["id"], method(hooked, SEPA_OK if kind == "sepa_debit" else ACH_OK))
    assert again.status_code == 200 and again.json()["status"] == "processing", again.text
    hooked.sim_post(f"/_sim/payment_intents/{payment['stripe_payment_intent_id']}/settle")
    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))


async def test_a_redirect_method_needs_the_customer_then_succeeds(hooked: Hooked, api, database) -> None:
    payment = await new_payment(api, amount="15.00", currency="eur", payment_method_types=["ideal"])
    response = await api.post("/api/payments/confirm", json={
        "payment_id": payment["id"], "payment_method": stripe_js(hooked, type="ideal", **{"ideal[bank]": "ing"}),
        "return_url": "https://shop.example/back?order=7"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "requires_action"
    redirect = body["next_action"]["redirect_to_url"]
    assert body["next_action"]["type"] == "redirect_to_url" and redirect["url"].startswith("http")
    assert redirect["return_url"] == "https://shop.example/back?order=7"

    # The customer follows the URL, approves at the bank, and is sent back to the shop.
    async with httpx.AsyncClient() as browser:
        landed = await browser.get(redirect["url"], follow_redirects=False)
    assert landed.status_code == 302
    assert landed.headers["location"].startswith("https://shop.example/back?order=7&")
    assert "redirect_status=succeeded" in landed.headers["location"]

    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))
    assert ("requires_action", "succeeded", "webhook") in await moves(database, payment["id"])
    receipt = (await api.get(f"/api/payments/{payment['id']}/receipt",
                             headers={"Accept": "application/json"})).json()
    assert receipt["payment_method"]["type"] == "ideal" and receipt["payment_method"]["label"] == "iDEAL"


async def test_a_redirect_the_customer_fails_goes_back_to_requires_payment_method(
    hooked: Hooked, api, database
) -> None:
    payment = await new_payment(api, amount="15.00", currency="eur", payment_method_types=["bancontact"])
    response = await api.post("/api/payments/confirm", json={
        "payment_id": payment["id"], "payment_method": stripe_js(hooked, type="bancontact"),
        "return_url": "https://shop.example/back"})
    assert response.json()["status"] == "requires_action", response.text

    async with httpx.AsyncClient() as browser:
        landed = await browser.get(response.json()["next_action"]["redirect_to_url"]["url"],
                                   params={"outcome": "fail"}, follow_redirects=False)
    assert "redirect_status=failed" in landed.headers["location"]

    await eventually(lambda: _status_is(database, payment["id"], "requires_payment_method"))
    shown = await detail(api, payment["id"])
    assert shown["last_payment_error"]["code"] == "payment_intent_authentication_failure"
    assert shown["next_action"] is None


async def test_a_redirect_method_without_return_url_is_refused_and_nothing_moves(
    hooked: Hooked, api, database
) -> None:
    payment = await new_payment(api, amount="15.00", currency="eur", payment_method_types=["ideal"])
    response = await confirm(api, payment["id"], stripe_js(hooked, type="ideal"))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "return_url"
    assert await status_of(database, payment["id"]) == "requires_payment_method"


async def test_a_method_of_a_type_the_payment_does_not_allow_is_refused(hooked: Hooked, api, database) -> None:
    payment = await new_payment(api, amount="15.00", currency="eur", payment_method_types=["sepa_debit"])
    response = await confirm(api, payment["id"], "pm_card_visa")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert await status_of(database, payment["id"]) == "requires_payment_method"
