"""Authentication, unknown URLs, and parameter checking with Stripe's codes and `param` paths."""

from __future__ import annotations

import base64

import httpx
import pytest
import stripe

from tests.stripe_sim.helpers import make_client


async def test_missing_api_key(sim):
    async with httpx.AsyncClient() as http:
        response = await http.get(sim.url + "/v1/payment_intents")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "You did not provide an API key" in error["message"]
    assert response.headers["www-authenticate"] == 'Basic realm="Stripe"'


@pytest.mark.parametrize("key", ["sk_live_abcdefghijklmnop", "pk_test_abcdefghijklmnop", "nonsense"])
async def test_bad_api_keys(sim, key):
    with pytest.raises(stripe.AuthenticationError) as err:
        await make_client(sim.url, key=key).v1.payment_intents.list_async()
    assert err.value.http_status == 401
    message = err.value.json_body["error"]["message"]
    assert message.startswith("Invalid API Key provided: ") and key not in message


async def test_basic_auth_is_accepted(sim):
    token = base64.b64encode(b"sk_test_basic:").decode()
    async with httpx.AsyncClient() as http:
        response = await http.get(sim.url + "/v1/payment_intents", headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 200 and response.json()["object"] == "list"


async def test_unknown_url(sim):
    async with httpx.AsyncClient() as http:
        response = await http.post(sim.url + "/v1/payment_intents/pi_1/explode",
                                   headers={"Authorization": "Bearer sk_test_x"})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("Unrecognized request URL (POST: /v1/payment_intents/")


async def test_response_headers(client):
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
    headers = pi.last_response.headers
    assert headers["Request-Id"].startswith("req_")
    assert headers["Stripe-Version"] == stripe.api_version


@pytest.mark.parametrize("params, code, param", [
    ({"amount": 1000, "currency": "usd", "amout": 5}, "parameter_unknown", "amout"),
    ({"amount": "ten", "currency": "usd"}, "parameter_invalid_integer", "amount"),
    ({"amount": "", "currency": "usd"}, "parameter_invalid_empty", "amount"),
    ({"currency": "usd"}, "parameter_missing", "amount"),
    ({"amount": 1000}, "parameter_missing", "currency"),
    ({"amount": 1000, "currency": "usd", "metadata": {"a": {"b": "c"}}}, None, "metadata[a]"),
    ({"amount": 1000, "currency": "usd", "payment_method_options": {"card": {"bogus": "1"}}},
     "parameter_unknown", "payment_method_options[card][bogus]"),
    ({"amount": 1000, "currency": "usd", "confirm": "yes"}, None, "confirm"),
    ({"amount": 1000, "currency": "usd", "capture_method": "later"}, None, "capture_method"),
    ({"amount": 1000, "currency": "usd", "payment_method_types": "card"}, None, "payment_method_types"),
])
async def test_create_parameter_errors(client, params, code, param):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params=params)
    assert err.value.http_status == 400
    assert err.value.param == param
    assert err.value.code == code
    assert err.value.json_body["error"]["type"] == "invalid_request_error"


async def test_unknown_query_parameter_on_get(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.list_async(params={"colour": "blue"})
    assert err.value.code == "parameter_unknown" and err.value.param == "colour"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.list_async(params={"limit": "many"})
    assert err.value.code == "parameter_invalid_integer"


async def test_created_filter(client):
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
    hit = await client.v1.payment_intents.list_async(params={"created": {"gte": pi.created}})
    miss = await client.v1.payment_intents.list_async(params={"created": {"gt": pi.created + 10}})
    assert [p.id for p in hit.data] == [pi.id] and miss.data == []


async def test_expand_errors(client):
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.retrieve_async(pi.id, params={"expand": ["amount"]})
    assert "cannot be expanded" in err.value.user_message
    nothing = await client.v1.payment_intents.retrieve_async(pi.id, params={"expand": ["latest_charge"]})
    assert nothing.latest_charge is None


async def test_expand_on_lists(client):
    await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    page = await client.v1.payment_intents.list_async(params={"expand": ["data.latest_charge"]})
    assert page.data[0].latest_charge.object == "charge"


async def test_empty_brackets_array_syntax(sim):
    """curl users write `expand[]=...`; Stripe accepts it, so does the simulator."""
    async with httpx.AsyncClient(headers={"Authorization": "Bearer sk_test_x"}) as http:
        created = await http.post(sim.url + "/v1/payment_intents", content=(
            "amount=1000&currency=usd&payment_method=pm_card_visa&confirm=true&expand[]=latest_charge"
            "&payment_method_types[]=card&metadata[order]=7"),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        body = created.json()
        assert created.status_code == 200, body
        assert body["latest_charge"]["object"] == "charge" and body["metadata"] == {"order": "7"}
        bad = await http.post(sim.url + "/v1/payment_intents", content="amount]=1",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 400


async def test_a_simulator_bug_answers_500_and_frees_the_key(client, monkeypatch):
    from stripe_sim import routes

    def broken(*args):
        raise RuntimeError("bug")

    monkeypatch.setitem(routes.HANDLERS, "POST /v1/customers", broken)
    with pytest.raises(stripe.APIError) as err:
        await client.v1.customers.create_async(options={"idempotency_key": "after-bug"})
    assert err.value.http_status == 500 and err.value.json_body["error"]["type"] == "api_error"
    monkeypatch.undo()
    customer = await client.v1.customers.create_async(options={"idempotency_key": "after-bug"})
    assert customer.id.startswith("cus_")
