"""Webhook delivery: Stripe's signature, retries with backoff, and the delay/duplicate/reorder knobs."""

from __future__ import annotations

import itertools
import json
import time

import pytest
import stripe

import stripe_sim
from tests.stripe_sim.helpers import Receiver, eventually, make_client


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


async def register(client, receiver, events=("*",)):
    return await client.v1.webhook_endpoints.create_async(params={"url": receiver.url,
                                                                  "enabled_events": list(events)})


async def pay(client):
    return await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})


async def delivered(receiver, count):
    async def enough():
        return len(receiver.deliveries) >= count

    await eventually(enough)


async def test_endpoint_secret_and_signed_delivery(client, receiver):
    endpoint = await register(client, receiver)
    assert endpoint.secret.startswith("whsec_") and endpoint.status == "enabled"
    assert "secret" not in (await client.v1.webhook_endpoints.retrieve_async(endpoint.id))
    pi = await pay(client)
    await delivered(receiver, 3)
    types = []
    for headers, body in receiver.deliveries:
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], endpoint.secret)
        types.append(event.type)
        assert headers["Content-Type"].startswith("application/json")
        assert headers["User-Agent"].startswith("Stripe/1.0")
    assert sorted(types) == ["charge.succeeded", "payment_intent.created", "payment_intent.succeeded"]
    succeeded = next(json.loads(b) for _, b in receiver.deliveries if b"payment_intent.succeeded" in b)
    assert succeeded["data"]["object"]["id"] == pi.id and succeeded["data"]["object"]["status"] == "succeeded"
    with pytest.raises(stripe.SignatureVerificationError):
        headers, body = receiver.deliveries[0]
        stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], "whsec_wrong")


async def test_enabled_events_filter_and_pending_webhooks(client, receiver):
    await register(client, receiver, events=["payment_intent.succeeded"])
    await pay(client)
    await delivered(receiver, 1)
    assert [json.loads(b)["type"] for _, b in receiver.deliveries] == ["payment_intent.succeeded"]
    event_id = receiver.event_ids()[0]

    async def acknowledged():
        return (await client.v1.events.retrieve_async(event_id)).pending_webhooks == 0

    await eventually(acknowledged)
    created = (await client.v1.events.list_async(params={"type": "payment_intent.created"})).data[0]
    assert created.pending_webhooks == 0  # nobody listens to it


async def test_retries_with_backoff_until_2xx(client, control):
    flaky = Receiver(statuses=[500, 503])
    try:
        await register(client, flaky, events=["payment_intent.created"])
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
        await delivered(flaky, 3)
        assert len(set(flaky.event_ids())) == 1

        async def logged():
            data = (await control.get("/webhooks")).json()["data"]
            return data if len(data) == 3 else None

        attempts = await eventually(logged)
        assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
        gaps = [b["timestamp"] - a["timestamp"] for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1  # backoff doubles: 50 ms, then 100 ms in this suite
    finally:
        flaky.close()


async def test_gives_up_after_max_attempts(client, control):
    down = Receiver(statuses=[500] * 10)
    try:
        await control.post("/config", json={"webhook_max_attempts": 3})
        await register(client, down, events=["payment_intent.created"])
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
        await delivered(down, 3)

        async def logged():
            return len((await control.get("/webhooks")).json()["data"]) == 3

        await eventually(logged)
        assert len(down.deliveries) == 3
    finally:
        down.close()


async def test_unreachable_endpoint_is_logged(client, control):
    await control.post("/config", json={"webhook_max_attempts": 1})
    await client.v1.webhook_endpoints.create_async(params={"url": "http://127.0.0.1:9/nothing",
                                                           "enabled_events": ["*"]})
    await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})

    async def failed():
        return (await control.get("/webhooks")).json()["data"]

    attempt = (await eventually(failed))[0]
    assert attempt["status"] is None and "ClientConnectorError" in attempt["error"]  # refused


async def test_delivery_timeout_counts_as_failure(client, control):
    slow = Receiver(delay_s=1.0)
    try:
        await control.post("/config", json={"webhook_timeout_s": 0.2, "webhook_max_attempts": 1})
        await register(client, slow, events=["payment_intent.created"])
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})

        async def logged():
            return (await control.get("/webhooks")).json()["data"]

        attempt = (await eventually(logged))[0]
        assert attempt["status"] is None and "Timeout" in attempt["error"]
    finally:
        slow.close()


async def test_delivery_delay(client, control, receiver):
    await control.post("/config", json={"webhook_delay_ms": 300})
    await register(client, receiver, events=["payment_intent.created"])
    started = time.monotonic()
    await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
    await delivered(receiver, 1)
    assert time.monotonic() - started >= 0.28


async def test_duplicates(client, control, receiver):
    await control.post("/config", json={"webhook_duplicate_rate": 1.0})
    await register(client, receiver, events=["payment_intent.created"])
    await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})
    await delivered(receiver, 2)
    ids = receiver.event_ids()
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_reordering(client, control, receiver):
    await control.post("/config", json={"webhook_reorder_window_ms": 100})
    await register(client, receiver)
    await pay(client)
    await delivered(receiver, 3)
    newest_first = [e.id for e in (await client.v1.events.list_async()).data]
    assert receiver.event_ids() == newest_first


async def test_endpoint_update_disable_and_delete(client, receiver):
    endpoint = await register(client, receiver)
    updated = await client.v1.webhook_endpoints.update_async(endpoint.id, params={
        "disabled": True, "description": "off", "enabled_events": ["charge.succeeded"]})
    assert updated.status == "disabled" and updated.enabled_events == ["charge.succeeded"]
    await pay(client)
    assert (await client.v1.webhook_endpoints.list_async()).data[0].id == endpoint.id
    deleted = await client.v1.webhook_endpoints.delete_async(endpoint.id)
    assert deleted.deleted is True
    assert (await client.v1.webhook_endpoints.list_async()).data == []
    assert receiver.deliveries == []
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.webhook_endpoints.create_async(params={"url": "ftp://x", "enabled_events": ["*"]})


async def test_start_flag_endpoint():
    receiver = Receiver()
    handle = stripe_sim.start_in_thread(webhook_url=receiver.url, webhook_secret="whsec_fromflag")
    try:
        client = make_client(handle.url)
        await client.v1.customers.create_async(params={"email": "x@example.com"})

        async def arrived():
            return receiver.deliveries

        headers, body = (await eventually(arrived))[0]
        event = stripe.Webhook.construct_event(body.decode(), headers["Stripe-Signature"], "whsec_fromflag")
        assert event.type == "customer.created"
    finally:
        handle.stop()
        receiver.close()


def test_signature_header_format():
    header = stripe_sim.signature_header(b'{"id": "evt_1"}', "whsec_abc", timestamp=1700000000)
    assert header.startswith("t=1700000000,v1=")
    stripe.WebhookSignature.verify_header('{"id": "evt_1"}', header, "whsec_abc", tolerance=None)
