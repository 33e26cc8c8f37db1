"""Knobs: latency, rate limits (429), injected 5xx, dropped connections, timeouts, request log, config."""

from __future__ import annotations

import statistics
import time

import pytest
import stripe

from stripe_sim.knobs import Config, Faults
from tests.stripe_sim.helpers import make_client


async def create(client):
    return await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"})


async def test_fixed_latency(client, control):
    await control.post("/config", json={"latency_ms": 200})
    started = time.monotonic()
    await create(client)
    assert time.monotonic() - started >= 0.18


async def test_latency_per_operation(client, control):
    await control.post("/config", json={"latency_by_operation": {"POST /v1/payment_intents": {"latency_ms": 200}}})
    started = time.monotonic()
    await create(client)
    assert time.monotonic() - started >= 0.18


def test_lognormal_latency_matches_median_and_p99():
    faults = Faults(Config(latency_ms=20, latency_p99_ms=100, seed=7))
    samples = sorted(faults.latency_s("GET /v1/events") * 1000 for _ in range(20_000))
    assert 18 < statistics.median(samples) < 22
    assert 85 < samples[int(len(samples) * 0.99)] < 115


async def test_global_rate_limit(client, control):
    await control.post("/config", json={"rate_limit_rps": 2})
    errors = []
    for _ in range(5):
        try:
            await client.v1.payment_intents.list_async()
        except stripe.RateLimitError as exc:
            errors.append(exc)
    assert errors, "a burst above the limit must be refused"
    body = errors[0].json_body["error"]
    assert errors[0].http_status == 429
    assert body["code"] == "rate_limit" and body["type"] == "invalid_request_error"
    assert "Stripe-Should-Retry" not in errors[0].headers


async def test_rate_limit_per_operation(client, control):
    await control.post("/config", json={"rate_limit_by_operation": {"GET /v1/payment_intents": 1}})
    await client.v1.payment_intents.list_async()
    with pytest.raises(stripe.RateLimitError):
        await client.v1.payment_intents.list_async()
    assert (await create(client)).status == "requires_payment_method"


async def test_rate_limited_requests_do_not_save_idempotency_keys(client, control):
    await control.post("/faults", json={"kind": "rate_limit", "count": 1})
    with pytest.raises(stripe.RateLimitError):
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                      options={"idempotency_key": "rl"})
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "usd"},
                                                       options={"idempotency_key": "rl"})
    assert pi.last_response.headers["Idempotent-Replayed"] == "false"


async def test_lock_timeout_asks_for_retry(sim, client, control):
    await control.post("/faults", json={"kind": "lock_timeout", "count": 1})
    with pytest.raises(stripe.RateLimitError) as err:
        await create(client)
    assert err.value.json_body["error"]["code"] == "lock_timeout"
    assert err.value.headers["Stripe-Should-Retry"] == "true"
    await control.post("/faults", json={"kind": "lock_timeout", "count": 1})
    assert (await create(make_client(sim.url, retries=1))).id.startswith("pi_")


async def test_next_n_server_errors_then_sdk_retries_succeed(sim, control):
    await control.post("/faults", json={"kind": "api_error", "count": 2})
    pi = await create(make_client(sim.url, retries=2))
    log = (await control.get("/requests")).json()["data"]
    assert [(r["status"], r["fault"]) for r in log] == [(500, "api_error"), (500, "api_error"), (200, None)]
    assert len({r["idempotency_key"] for r in log}) == 1
    assert pi.status == "requires_payment_method"


async def test_error_status_and_operation_filter(client, control):
    await control.post("/config", json={"error_status": 503})
    await control.post("/faults", json={"kind": "api_error", "count": 1, "operation": "GET /v1/payment_intents"})
    assert (await control.get("/faults")).json()["data"][0]["operation"] == "GET /v1/payment_intents"
    await create(client)  # a different operation: untouched
    with pytest.raises(stripe.APIError) as err:
        await client.v1.payment_intents.list_async()
    assert err.value.http_status == 503
    assert err.value.json_body["error"]["type"] == "api_error"
    assert (await control.get("/faults")).json()["data"] == []


async def test_fault_rate(client, control):
    await control.post("/config", json={"fault_rates": {"api_error": 1.0}})
    for _ in range(3):
        with pytest.raises(stripe.APIError):
            await create(client)
    await control.post("/config", json={"fault_rates": {}})
    await create(client)


async def test_dropped_connection(client, control):
    await control.post("/faults", json={"kind": "drop", "count": 1})
    with pytest.raises(stripe.APIConnectionError):
        await create(client)
    assert (await create(client)).id.startswith("pi_")
    assert (await control.get("/requests")).json()["data"][0]["fault"] == "drop"


async def test_dropped_before_stripe_acts_creates_nothing(client, control):
    await control.post("/faults", json={"kind": "drop", "count": 1})
    with pytest.raises(stripe.APIConnectionError):
        await create(client)
    assert (await client.v1.payment_intents.list_async()).data == []


async def test_timeout(sim, control):
    await control.post("/config", json={"hang_s": 5})
    await control.post("/faults", json={"kind": "timeout", "count": 1})
    impatient = make_client(sim.url, timeout=0.3)
    with pytest.raises(stripe.APIConnectionError):
        await create(impatient)
    assert (await client_list_len(impatient)) == 0


async def test_timeout_after_stripe_acted(sim, control):
    await control.post("/config", json={"hang_s": 5})
    await control.post("/faults", json={"kind": "timeout_after", "count": 1})
    impatient = make_client(sim.url, timeout=0.3)
    with pytest.raises(stripe.APIConnectionError):
        await create(impatient)
    assert (await client_list_len(impatient)) == 1


async def client_list_len(client) -> int:
    return len((await client.v1.payment_intents.list_async()).data)


async def test_request_log(client, control):
    pi = await client.v1.payment_intents.create_async(
        params={"amount": 1000, "currency": "usd", "metadata": {"order": "9"}, "payment_method_types": ["card"]},
        options={"idempotency_key": "logged"})
    await client.v1.payment_intents.retrieve_async(pi.id)
    log = (await control.get("/requests")).json()["data"]
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("POST", "/v1/payment_intents", 200), ("GET", f"/v1/payment_intents/{pi.id}", 200)]
    first = log[0]
    assert first["idempotency_key"] == "logged" and first["operation"] == "POST /v1/payment_intents"
    assert first["params"] == {"amount": 1000, "currency": "usd", "metadata": {"order": "9"},
                               "payment_method_types": ["card"]}
    assert first["timestamp"] > 0 and first["id"].startswith("req_")
    only_get = (await control.get("/requests", params={"method": "GET", "status": "200"})).json()["data"]
    assert [r["path"] for r in only_get] == [f"/v1/payment_intents/{pi.id}"]
    await control.delete("/requests")
    assert (await control.get("/requests")).json()["data"] == []


async def test_request_log_limit(client, control):
    await control.post("/config", json={"request_log_limit": 2})
    for _ in range(3):
        await create(client)
    assert len((await control.get("/requests")).json()["data"]) == 2


async def test_config_round_trip_and_validation(control):
    config = (await control.get("/config")).json()
    assert config["latency_ms"] == 0 and "webhook_duplicate_rate" in config
    changed = await control.post("/config", json={"latency_ms": 5, "rate_limit_rps": 100})
    assert changed.json()["latency_ms"] == 5 and changed.json()["rate_limit_rps"] == 100
    assert (await control.post("/config", json={"nonsense": 1})).status_code == 400
    assert (await control.post("/config", json={"fault_rates": {"meteor": 1}})).status_code == 400
    assert (await control.post("/faults", json={"kind": "meteor"})).status_code == 400
    assert (await control.post("/faults", content=b"{not json")).status_code == 400
    assert (await control.get("/nothing-here")).status_code == 404


async def test_reset_and_stats(client, control):
    await create(client)
    stats = (await control.get("/stats")).json()
    assert stats["objects"]["payment_intents"] == 1 and stats["rss_kb"] > 0
    await control.post("/reset")
    assert (await control.get("/stats")).json()["objects"]["payment_intents"] == 0
    assert (await control.get("/health")).json() == {"ok": True}
