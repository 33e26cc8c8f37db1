"""Stripe-style idempotency: replays (errors too), parameter mismatch, in-flight conflicts."""

from __future__ import annotations

import asyncio

import pytest
import stripe

from tests.stripe_sim.helpers import eventually

PARAMS = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


async def requests_for(control, key: str) -> list[dict]:
    log = (await control.get("/requests")).json()["data"]
    return [r for r in log if r["idempotency_key"] == key]


async def test_same_key_same_params_replays(client, control):
    first = await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "order-1"})
    again = await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "order-1"})
    assert again.id == first.id
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert first.last_response.headers["Idempotent-Replayed"] == "false"
    assert again.last_response.headers["Idempotency-Key"] == "order-1"
    assert len((await client.v1.payment_intents.list_async()).data) == 1
    assert [r["replayed"] for r in await requests_for(control, "order-1")] == [False, True]


async def test_replay_is_the_original_response_not_current_state(client):
    first = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                          options={"idempotency_key": "k"})
    await client.v1.payment_intents.cancel_async(first.id)
    again = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                          options={"idempotency_key": "k"})
    assert again.status == "requires_payment_method"


async def test_errors_are_replayed(client):
    params = {**PARAMS, "payment_method": "pm_card_chargeDeclined"}
    with pytest.raises(stripe.CardError) as first:
        await client.v1.payment_intents.create_async(params=params, options={"idempotency_key": "decline"})
    with pytest.raises(stripe.CardError) as again:
        await client.v1.payment_intents.create_async(params=params, options={"idempotency_key": "decline"})
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert again.value.json_body == first.value.json_body
    assert len((await client.v1.payment_intents.list_async()).data) == 1


async def test_same_key_other_params_is_refused(client):
    await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "k2"})
    with pytest.raises(stripe.IdempotencyError) as err:
        await client.v1.payment_intents.create_async(params={**PARAMS, "amount": 1001},
                                                      options={"idempotency_key": "k2"})
    assert err.value.http_status == 400
    assert err.value.json_body["error"]["type"] == "idempotency_error"


async def test_same_key_other_endpoint_is_refused(client):
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                       options={"idempotency_key": "k3"})
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.payment_intents.cancel_async(pi.id, options={"idempotency_key": "k3"})


async def test_parameter_order_does_not_matter(client):
    a = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd", "metadata": {
        "x": "1", "y": "2"}}, options={"idempotency_key": "order"})
    b = await client.v1.payment_intents.create_async(params={"metadata": {"y": "2", "x": "1"}, "currency": "usd",
                                                             "amount": 1000}, options={"idempotency_key": "order"})
    assert a.id == b.id


async def test_validation_errors_are_not_saved(client):
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd", "bogus": "1"},
                                                      options={"idempotency_key": "fixme"})
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                       options={"idempotency_key": "fixme"})
    assert pi.status == "requires_payment_method"


async def test_in_flight_key_answers_409(client, control):
    await control.post("/config", json={"latency_by_operation": {"POST /v1/payment_intents": {"latency_ms": 1000}}})
    slow = asyncio.create_task(client.v1.payment_intents.create_async(params=PARAMS,
                                                                      options={"idempotency_key": "busy"}))

    async def first_arrived():
        return await requests_for(control, "busy")

    await eventually(first_arrived)
    try:
        with pytest.raises(stripe.APIError) as err:  # the SDK has no narrower class for 409
            await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "busy"})
    finally:
        first = await slow
    assert err.value.http_status == 409
    assert err.value.json_body["error"]["code"] == "idempotency_key_in_use"
    again = await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "busy"})
    assert again.id == first.id


async def test_keys_are_scoped_to_the_api_key(sim, client):
    from tests.stripe_sim.helpers import make_client

    other = make_client(sim.url, key="sk_test_other_account")
    a = await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "shared"})
    b = await other.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "shared"})
    assert a.id != b.id


async def test_sdk_retry_after_dropped_response_gets_the_original(sim, control):
    """The classic case idempotency exists for: Stripe did the work, the response was lost."""
    from tests.stripe_sim.helpers import make_client

    retrying = make_client(sim.url, retries=2)
    await control.post("/faults", json={"kind": "drop_after", "count": 1})
    pi = await retrying.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "lost"})
    assert pi.status == "succeeded"
    log = await requests_for(control, "lost")
    assert [(r["fault"], r["replayed"]) for r in log] == [("drop_after", False), (None, True)]
    assert len((await retrying.v1.payment_intents.list_async()).data) == 1


async def test_keys_expire_after_the_ttl(client, control):
    await control.post("/config", json={"idempotency_ttl_s": 0.2})
    first = await client.v1.payment_intents.create_async(params=PARAMS, options={"idempotency_key": "old"})
    await asyncio.sleep(0.3)
    second = await client.v1.payment_intents.create_async(params={**PARAMS, "amount": 999},
                                                           options={"idempotency_key": "old"})
    assert second.id != first.id and second.amount == 999
