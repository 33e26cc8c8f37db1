"""StripeProvider against stripe_sim over real HTTP, through the official SDK.

Proves the calls, the idempotency keys, the SDK's retries and the webhook signatures end to end;
the simulator's request log (`/_sim/requests`) shows what actually went over the wire.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import stripe
import stripe_sim

from paymentd.providers import (
    ProviderAuthError,
    ProviderDeclined,
    ProviderIdempotencyError,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderStatus,
    ProviderUnavailable,
    WebhookSignatureError,
)
from paymentd.providers.stripe import StripeProvider

API_KEY = "sk_test_paymentd_integration"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    handle = stripe_sim.start_in_thread(host="127.0.0.1", port=0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def control(simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.url, timeout=10.0) as client:
        yield client


@pytest.fixture(autouse=True)
def reset(control: httpx.Client) -> None:
    control.post("/_sim/reset").raise_for_status()


@pytest.fixture
async def provider(simulator) -> AsyncIterator[StripeProvider]:
    p = StripeProvider(API_KEY, api_base=simulator.url, timeout=5.0)
    try:
        yield p
    finally:
        await p.aclose()


def key(op: str) -> str:
    """Keys shaped like the service's: paymentd id + operation (+ attempt)."""
    return f"{uuid.uuid4()}:{op}"


def sim_requests(control: httpx.Client) -> list[dict[str, Any]]:
    response = control.get("/_sim/requests")
    response.raise_for_status()
    return response.json()["data"]


def requests_with_key(control: httpx.Client, idempotency_key: str) -> list[dict[str, Any]]:
    return [r for r in sim_requests(control) if r["idempotency_key"] == idempotency_key]


def inject_fault(control: httpx.Client, kind: str, *, count: int = 1, status: int | None = None, operation: str | None = None) -> None:
    body: dict[str, Any] = {"kind": kind, "count": count}
    if status is not None:
        body["status"] = status
    if operation is not None:
        body["operation"] = operation
    control.post("/_sim/faults", json=body).raise_for_status()


async def new_payment(provider: StripeProvider, *, amount: int = 1999, capture_method: str = "automatic", **extra: Any) -> ProviderPayment:
    params: dict[str, Any] = {
        "amount": amount,
        "currency": "usd",
        "payment_method_types": ["card"],
        "capture_method": capture_method,
        "payment_method": None,
        "customer": None,
        "description": "integration test",
        "receipt_email": None,
        "metadata": {"payment_id": str(uuid.uuid4())},
        "idempotency_key": key("create"),
    }
    params.update(extra)
    return await provider.create_payment(**params)


# --------------------------------------------------------------------------- payments


async def test_create_then_confirm_succeeds_with_receipt_details(provider):
    created = await new_payment(provider)
    assert created.status is ProviderStatus.requires_payment_method
    assert created.id.startswith("pi_")
    assert created.client_secret and created.client_secret.startswith(created.id)
    assert (created.amount, created.currency, created.payment_method_types) == (1999, "usd", ("card",))

    paid = await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))
    assert paid.status is ProviderStatus.succeeded
    assert paid.amount_received == 1999
    assert paid.latest_charge and paid.latest_charge.startswith("ch_")
    details = paid.payment_method_details
    assert details is not None and details.card is not None
    assert (details.card.brand, details.card.last4) == ("visa", "4242")
    assert details.label == "Visa ••••4242"

    again = await provider.retrieve_payment(created.id)
    assert again.status is ProviderStatus.succeeded
    assert again.payment_method_details == details


async def test_decline_raises_with_decline_code_and_the_payment_after_it(provider):
    created = await new_payment(provider)
    with pytest.raises(ProviderDeclined) as info:
        await provider.confirm_payment(created.id, payment_method="pm_card_chargeDeclined", return_url=None, idempotency_key=key("confirm:1"))
    declined = info.value
    assert declined.code == "card_declined"
    assert declined.decline_code == "generic_decline"
    assert declined.http_status == 402
    assert declined.payment is not None
    assert declined.payment.id == created.id
    assert declined.payment.status is ProviderStatus.requires_payment_method
    assert declined.payment.last_error is not None
    assert declined.payment.last_error.decline_code == "generic_decline"

    # Another method, another attempt (so another key): the same payment can still succeed.
    paid = await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:2"))
    assert paid.status is ProviderStatus.succeeded


async def test_insufficient_funds_decline_code(provider):
    created = await new_payment(provider)
    with pytest.raises(ProviderDeclined) as info:
        await provider.confirm_payment(created.id, payment_method="pm_card_chargeDeclinedInsufficientFunds", return_url=None, idempotency_key=key("confirm:1"))
    assert info.value.decline_code == "insufficient_funds"


async def test_three_d_secure_requires_action_then_succeeds(provider, control):
    created = await new_payment(provider)
    pending = await provider.confirm_payment(
        created.id,
        payment_method="pm_card_threeDSecure2Required",
        return_url="https://shop.example/return",
        idempotency_key=key("confirm:1"),
    )
    assert pending.status is ProviderStatus.requires_action
    assert pending.next_action is not None and pending.next_action.get("type")

    control.post(f"/_sim/payment_intents/{created.id}/authenticate", json={"outcome": "succeed"}).raise_for_status()
    done = await provider.retrieve_payment(created.id)
    assert done.status is ProviderStatus.succeeded


async def test_three_d_secure_failure_goes_back_to_requires_payment_method(provider, control):
    created = await new_payment(provider)
    await provider.confirm_payment(created.id, payment_method="pm_card_threeDSecure2Required", return_url="https://shop.example/return", idempotency_key=key("confirm:1"))
    control.post(f"/_sim/payment_intents/{created.id}/authenticate", json={"outcome": "fail"}).raise_for_status()
    failed = await provider.retrieve_payment(created.id)
    assert failed.status is ProviderStatus.requires_payment_method
    assert failed.last_error is not None


async def test_manual_capture_partial(provider):
    created = await new_payment(provider, capture_method="manual")
    held = await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))
    assert held.status is ProviderStatus.requires_capture
    assert held.capture_method == "manual"
    assert held.amount_capturable == 1999
    assert held.amount_received == 0

    captured = await provider.capture_payment(created.id, amount=1500, idempotency_key=key("capture"))
    assert captured.status is ProviderStatus.succeeded
    assert captured.amount_received == 1500
    assert captured.amount_capturable == 0
    assert captured.payment_method_details is not None


async def test_cancel_an_authorisation_and_an_unconfirmed_payment(provider):
    created = await new_payment(provider, capture_method="manual")
    await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))
    canceled = await provider.cancel_payment(created.id, reason="requested_by_customer", idempotency_key=key("cancel"))
    assert canceled.status is ProviderStatus.canceled

    fresh = await new_payment(provider)
    assert (await provider.cancel_payment(fresh.id, reason=None, idempotency_key=key("cancel"))).status is ProviderStatus.canceled


async def test_capture_of_a_canceled_payment_is_an_invalid_request(provider):
    created = await new_payment(provider)
    await provider.cancel_payment(created.id, reason=None, idempotency_key=key("cancel"))
    with pytest.raises(ProviderInvalidRequest) as info:
        await provider.capture_payment(created.id, amount=None, idempotency_key=key("capture"))
    assert info.value.http_status == 400
    assert info.value.request_id


async def test_unknown_payment_is_an_invalid_request(provider):
    with pytest.raises(ProviderInvalidRequest) as info:
        await provider.retrieve_payment("pi_doesnotexist")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"


# --------------------------------------------------------------------------- refunds


async def test_partial_then_full_refund(provider):
    created = await new_payment(provider)
    await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))

    first = await provider.create_refund(payment_id=created.id, amount=500, reason="requested_by_customer", metadata={"refund_id": "r-1"}, idempotency_key=key("refund:1"))
    assert first.id.startswith("re_")
    assert (first.payment_id, first.amount, first.currency) == (created.id, 500, "usd")
    assert first.status == "succeeded"
    assert first.reason == "requested_by_customer"
    assert await provider.retrieve_refund(first.id) == first

    rest = await provider.create_refund(payment_id=created.id, amount=None, reason=None, metadata={}, idempotency_key=key("refund:2"))
    assert rest.amount == 1499

    with pytest.raises(ProviderInvalidRequest):
        await provider.create_refund(payment_id=created.id, amount=1, reason=None, metadata={}, idempotency_key=key("refund:3"))


# --------------------------------------------------------------------------- idempotency & retries


async def test_every_post_carries_the_callers_key_and_a_replay_is_the_same_object(provider, control):
    create_key = key("create")
    first = await new_payment(provider, idempotency_key=create_key)
    seen = requests_with_key(control, create_key)
    assert len(seen) == 1
    assert seen[0]["method"] == "POST"

    confirm_key = key("confirm:1")
    await provider.confirm_payment(first.id, payment_method="pm_card_visa", return_url=None, idempotency_key=confirm_key)
    assert len(requests_with_key(control, confirm_key)) == 1

    # Same key and same parameters: Stripe replays the first response, no second payment.
    params = {"amount": 700, "currency": "usd", "payment_method_types": ["card"], "capture_method": "automatic", "payment_method": None, "customer": None, "description": None, "receipt_email": None, "metadata": {"payment_id": "p-1"}}
    replay_key = key("create")
    a = await provider.create_payment(**params, idempotency_key=replay_key)
    b = await provider.create_payment(**params, idempotency_key=replay_key)
    assert a.id == b.id

    # No POST went out without a key, and none with a key we did not choose.
    posts = [r for r in sim_requests(control) if r["method"] == "POST"]
    assert posts and all(r["idempotency_key"] for r in posts)


async def test_key_reused_with_other_parameters(provider):
    reused = key("create")
    await new_payment(provider, amount=1000, idempotency_key=reused)
    with pytest.raises(ProviderIdempotencyError):
        await new_payment(provider, amount=2000, idempotency_key=reused)


async def test_injected_5xx_is_retried_by_the_sdk_with_the_same_key(provider, control):
    inject_fault(control, "api_error", count=1, status=500)
    create_key = key("create")
    created = await new_payment(provider, idempotency_key=create_key)
    assert created.status is ProviderStatus.requires_payment_method

    attempts = requests_with_key(control, create_key)
    assert len(attempts) == 2, attempts
    assert sorted(r["status"] for r in attempts) == [200, 500]


async def test_5xx_without_retries_left_is_unavailable(simulator, control):
    inject_fault(control, "api_error", count=5, status=503)
    p = StripeProvider(API_KEY, api_base=simulator.url, max_network_retries=0)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await new_payment(p)
    finally:
        await p.aclose()
    assert info.value.kind == "server"
    assert info.value.http_status == 503


async def test_stripes_429_is_retried_with_backoff_and_the_same_key(provider, control):
    """The SDK leaves a plain 429 alone; paymentd's transport retries it."""
    inject_fault(control, "rate_limit", count=2)
    create_key = key("create")
    created = await new_payment(provider, idempotency_key=create_key)
    assert created.status is ProviderStatus.requires_payment_method
    assert [r["status"] for r in requests_with_key(control, create_key)] == [429, 429, 200]


async def test_429_past_the_retries_is_rate_limited(provider, control):
    inject_fault(control, "rate_limit", count=10)
    create_key = key("create")
    with pytest.raises(ProviderUnavailable) as info:
        await new_payment(provider, idempotency_key=create_key)
    assert info.value.kind == "rate_limited"
    assert len(requests_with_key(control, create_key)) == 4  # the first try and three retries


async def test_timeout_is_unavailable_timeout(simulator, control):
    # Knobs survive /_sim/reset, so put the hang time back afterwards.
    hang_s = control.get("/_sim/config").json()["hang_s"]
    control.post("/_sim/config", json={"hang_s": 2.0}).raise_for_status()
    inject_fault(control, "timeout", count=1)
    p = StripeProvider(API_KEY, api_base=simulator.url, max_network_retries=0, timeout=0.5)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await new_payment(p)
    finally:
        await p.aclose()
        control.post("/_sim/config", json={"hang_s": hang_s})
    assert info.value.kind == "timeout"


async def test_unreachable_stripe_is_unavailable_connection():
    p = StripeProvider(API_KEY, api_base="http://127.0.0.1:9", max_network_retries=0, timeout=2.0)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await p.ping()
    finally:
        await p.aclose()
    assert info.value.kind == "connection"


async def test_answer_cut_mid_body_is_retried_then_unavailable_connection():
    """Headers arrive, then the connection closes halfway through the body: the SDK
    retries it under the same key like any connection error, then gives up as one."""
    seen: list[str] = []

    async def half_an_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        await reader.readexactly(length)
        seen.append(next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                         if line.lower().startswith(b"idempotency-key:")))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"id\": ")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(half_an_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    p = StripeProvider(API_KEY, api_base=f"http://127.0.0.1:{port}", max_network_retries=1, timeout=5.0)
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await new_payment(p, idempotency_key="cut-mid-body")
    finally:
        await p.aclose()
        server.close()
        await server.wait_closed()
    assert info.value.kind == "connection"
    assert seen == ["cut-mid-body", "cut-mid-body"]  # the first try and the SDK's one retry, same key


async def test_ping(provider):
    await provider.ping()


async def test_rejected_key_is_an_auth_error(simulator):
    p = StripeProvider("sk_live_not_for_the_simulator", api_base=simulator.url)
    try:
        with pytest.raises(ProviderAuthError) as info:
            await p.ping()
    finally:
        await p.aclose()
    assert info.value.http_status == 401


# --------------------------------------------------------------------------- customers & payment methods


async def test_customer_and_payment_methods(provider):
    customer = await provider.create_customer(email="jenny@example.com", name="Jenny Rosen", metadata={"user_id": "u-1"}, idempotency_key=key("customer"))
    assert customer.startswith("cus_")

    attached = await provider.attach_payment_method("pm_card_visa", customer=customer, idempotency_key=key("attach"))
    assert attached.customer == customer
    assert attached.card is not None and attached.card.last4 == "4242"
    assert attached.label == "Visa ••••4242"

    assert [pm.id for pm in await provider.list_payment_methods(customer)] == [attached.id]
    assert (await provider.retrieve_payment_method(attached.id)).id == attached.id

    detached = await provider.detach_payment_method(attached.id, idempotency_key=key("detach"))
    assert detached.customer is None
    assert await provider.list_payment_methods(customer) == []


async def test_payment_with_saved_method(provider):
    customer = await provider.create_customer(email=None, name=None, metadata={}, idempotency_key=key("customer"))
    pm = await provider.attach_payment_method("pm_card_mastercard", customer=customer, idempotency_key=key("attach"))
    created = await new_payment(provider, customer=customer, payment_method=pm.id, receipt_email="jenny@example.com")
    assert (created.customer, created.payment_method) == (customer, pm.id)
    paid = await provider.confirm_payment(created.id, payment_method=None, return_url=None, idempotency_key=key("confirm:1"))
    assert paid.status is ProviderStatus.succeeded
    assert paid.payment_method_details is not None and paid.payment_method_details.label == "Mastercard ••••4444"


# --------------------------------------------------------------------------- events & webhooks


async def test_list_events_pages_through_everything(provider):
    since = datetime.now(UTC) - timedelta(seconds=5)
    ids = []
    for _ in range(3):
        created = await new_payment(provider)
        await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))
        ids.append(created.id)

    events = [e async for e in provider.list_events(created_gte=since, types=["payment_intent.succeeded"])]
    assert sorted(e.payment_intent_id for e in events) == sorted(ids)
    assert all(isinstance(e.object, ProviderPayment) and e.object.status is ProviderStatus.succeeded for e in events)


async def test_list_events_follows_has_more(provider):
    # More events than one page of 100 holds, so the iterator has to follow has_more.
    since = datetime.now(UTC) - timedelta(seconds=5)
    ids = {(await new_payment(provider)).id for _ in range(105)}
    events = [e async for e in provider.list_events(created_gte=since, types=["payment_intent.created"])]
    assert len(events) == 105
    assert {e.payment_intent_id for e in events} == ids


class _Receiver(BaseHTTPRequestHandler):
    deliveries: queue.Queue[tuple[bytes, str]]

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.deliveries.put((body, self.headers.get("Stripe-Signature", "")))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[tuple[bytes, str]]]]:
    deliveries: queue.Queue[tuple[bytes, str]] = queue.Queue()
    handler = type("Receiver", (_Receiver,), {"deliveries": deliveries})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/webhooks/stripe", deliveries
    finally:
        server.shutdown()
        server.server_close()


def _register_endpoint(control: httpx.Client, url: str) -> str:
    """Register a webhook endpoint the way one does at Stripe; the answer holds its secret."""
    response = control.post(
        "/v1/webhook_endpoints",
        data={"url": url, "enabled_events[]": "*"},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    response.raise_for_status()
    return response.json()["secret"]


def _next_delivery(deliveries: queue.Queue[tuple[bytes, str]], event_type: str) -> tuple[bytes, str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body, header = deliveries.get(timeout=max(deadline - time.monotonic(), 0.01))
        if json.loads(body)["type"] == event_type:
            return body, header
    raise AssertionError(f"no {event_type} delivered")


async def test_webhook_signed_by_the_simulator_verifies_across_rotation(simulator, control, provider, webhook_receiver):
    url, deliveries = webhook_receiver
    old_secret = _register_endpoint(control, url)

    created = await new_payment(provider)
    await provider.confirm_payment(created.id, payment_method="pm_card_visa", return_url=None, idempotency_key=key("confirm:1"))
    body, header = _next_delivery(deliveries, "payment_intent.succeeded")

    # Mid-rotation the new secret is configured first and the old one still accepted.
    receiving = StripeProvider(API_KEY, api_base=simulator.url, webhook_secrets=["whsec_new_not_yet_used", old_secret])
    try:
        event = receiving.parse_webhook(body, header)
        assert event.type == "payment_intent.succeeded"
        assert event.payment_intent_id == created.id
        assert isinstance(event.object, ProviderPayment)
        assert event.object.status is ProviderStatus.succeeded

        # After rotation finishes, deliveries signed with the retired secret are refused.
        rotated = StripeProvider(API_KEY, api_base=simulator.url, webhook_secrets=["whsec_new_not_yet_used"])
        with pytest.raises(WebhookSignatureError):
            rotated.parse_webhook(body, header)
        await rotated.aclose()

        with pytest.raises(WebhookSignatureError):
            receiving.parse_webhook(body.replace(b"succeeded", b"canceled"), header)

        # A correctly signed delivery older than the 300 s tolerance is refused too.
        stale = stripe.WebhookSignature.generate_signature_header(body.decode(), old_secret, timestamp=int(time.time()) - 301)
        with pytest.raises(WebhookSignatureError) as info:
            receiving.parse_webhook(body, stale)
        assert info.value.code == "timestamp_outside_tolerance"
    finally:
        await receiving.aclose()
