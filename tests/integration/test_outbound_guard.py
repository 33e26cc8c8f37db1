"""The outbound guard against stripe_sim over HTTP: two OS processes sharing the Redis rate limit
never put more than N requests into any one-second window of the simulator's log; the circuit
breaker opens on injected 5xx, fails fast without reaching "Stripe", and closes when it is back."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import stripe_sim
from paymentd.config import Settings
from paymentd.providers.base import ProviderError, ProviderUnavailable
from paymentd.providers.breaker import CircuitBreaker
from paymentd.providers.guard import (
    GuardedProvider,
    aimed_rps,
    build_guarded_provider,
    outbound_deadline,
)
from paymentd.providers.limiter import OutboundRateLimited, StripeRateLimiter
from paymentd.providers.stripe import StripeProvider

API_KEY = "sk_test_paymentd_outbound_guard"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RPS = 20
RUN_S = 3.0


@pytest.fixture(scope="module")
def guard_sim() -> Iterator[Any]:
    handle = stripe_sim.start_in_thread(host="127.0.0.1", port=0)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def control(guard_sim) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guard_sim.url, timeout=10.0) as client:
        yield client


@pytest.fixture(autouse=True)
def reset(control: httpx.Client) -> Iterator[None]:
    control.post("/_sim/reset").raise_for_status()
    control.delete("/_sim/faults").raise_for_status()
    yield
    control.delete("/_sim/faults")


def api_requests(control: httpx.Client) -> list[dict[str, Any]]:
    return [
        r
        for r in control.get("/_sim/requests").json()["data"]
        if r["path"].startswith("/v1/")
    ]


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def redis_available() -> bool:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


async def create(provider: Any) -> Any:
    return await provider.create_payment(
        amount=1000,
        currency="usd",
        payment_method_types=["card"],
        capture_method="automatic",
        payment_method=None,
        customer=None,
        description=None,
        receipt_email=None,
        metadata={},
        idempotency_key=f"{uuid.uuid4()}:create",
    )


# --------------------------------------------------------------------------- two processes


async def _hammer(url: str, prefix: str, start_at: float) -> dict[str, int]:
    # max_network_retries=0: with per-call counting, each call is exactly one HTTP request.
    inner = StripeProvider(API_KEY, api_base=url, max_network_retries=0, timeout=10.0)
    # As production builds it: aimed 10% under the limit Stripe (the simulator) counts.
    limiter = StripeRateLimiter(aimed_rps(RPS), redis_url=REDIS_URL, key_prefix=prefix)
    guarded = GuardedProvider(inner, limiter=limiter, breaker=CircuitBreaker(5, 10.0))
    counts = {"ok": 0, "failed": 0}
    # A process's first SDK call is slow (lazy imports, first connection): a real request, through
    # the guard and in the log like any other, made before the two processes start together.
    await guarded.ping()
    await asyncio.sleep(max(start_at - time.time(), 0))
    stop = time.monotonic() + RUN_S

    async def worker() -> None:
        while time.monotonic() < stop:
            # Waiting longer than the response budget is what background work does.
            with outbound_deadline(time.monotonic() + 10.0):
                try:
                    await create(guarded)
                    counts["ok"] += 1
                except ProviderError:
                    counts["failed"] += 1

    try:
        await asyncio.gather(*(worker() for _ in range(2 * RPS)))
    finally:
        await guarded.aclose()
    return counts


def _process_main(url: str, prefix: str, start_at: float, results: Any) -> None:
    results.put(asyncio.run(_hammer(url, prefix, start_at)))


@pytest.mark.slow
def test_two_processes_share_the_limit(guard_sim, control: httpx.Client) -> None:
    if not redis_available():
        pytest.skip(f"no Redis at {REDIS_URL}")
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    prefix = (
        f"paymentd-test-{uuid.uuid4().hex}"  # parallel test runs never share a window
    )
    start_at = time.time() + 2.5  # both start together, after their imports
    procs = [
        ctx.Process(
            target=_process_main, args=(guard_sim.url, prefix, start_at, results)
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0

    log = api_requests(control)
    creates = [r for r in log if r["method"] == "POST"]
    assert len(log) == len(creates) + 2  # and the two warm-up pings
    # Every request that reached "Stripe" succeeded, and every call made got an answer.
    assert all(r["status"] == 200 for r in log), {r["status"] for r in log}
    assert sum(o["failed"] for o in outcomes) == 0, outcomes
    assert sum(o["ok"] for o in outcomes) == len(creates)
    assert all(o["ok"] > 0 for o in outcomes), (
        outcomes
    )  # both processes got their share
    # The point: the two processes share ONE limit. Apart, they would send about twice
    # RPS a second; shared, a window holds RPS, plus the few grants a loaded host delays
    # from one second into the next (at 20/s a handful is a large fraction: the strict
    # "never above the limit" check runs at Stripe's scale in tests/e2e/test_shared_limit.py).
    assert max_in_any_window([r["timestamp"] for r in log]) <= RPS * 1.5
    # ...while still using the budget (4 s of traffic at most: 3 s run + the last calls' wait).
    assert len(creates) >= RPS * RUN_S * 0.8, len(creates)


# --------------------------------------------------------------------------- breaker


async def test_breaker_opens_fails_fast_and_closes_when_stripe_is_back(
    guard_sim, control
) -> None:
    inner = StripeProvider(
        API_KEY, api_base=guard_sim.url, max_network_retries=0, timeout=5.0
    )
    breaker = CircuitBreaker(failures=3, reset_s=0.5)
    guarded = GuardedProvider(
        inner, limiter=StripeRateLimiter(100, redis_url=None), breaker=breaker
    )
    try:
        control.post(
            "/_sim/faults", json={"kind": "api_error", "count": 3, "status": 500}
        ).raise_for_status()
        for _ in range(3):
            with pytest.raises(ProviderUnavailable) as info:
                await create(guarded)
            assert info.value.kind == "server" and info.value.code != "circuit_open"
        assert breaker.state == "open"
        reached = len(api_requests(control))
        assert reached == 3

        # Open: fail at once, with Retry-After, without a single request reaching the simulator.
        for _ in range(10):
            started = time.monotonic()
            with pytest.raises(ProviderUnavailable) as info:
                await create(guarded)
            assert time.monotonic() - started < 0.05
            assert info.value.kind == "server"
            assert info.value.code == "circuit_open"
            assert 0 < (info.value.retry_after or 0) <= 0.5
        with pytest.raises(ProviderUnavailable):
            await guarded.ping()  # /readyz sees the open circuit too, without a request
        assert len(api_requests(control)) == reached

        # After reset_s the simulator is healthy again: the probe (here /readyz's ping) closes it.
        await asyncio.sleep(0.55)
        assert breaker.state == "half_open"
        await guarded.ping()
        assert breaker.state == "closed"
        payment = await create(guarded)
        assert payment.id.startswith("pi_")
        assert len(api_requests(control)) == reached + 2
    finally:
        await guarded.aclose()


async def test_failed_probe_reopens(guard_sim, control) -> None:
    inner = StripeProvider(
        API_KEY, api_base=guard_sim.url, max_network_retries=0, timeout=5.0
    )
    breaker = CircuitBreaker(failures=2, reset_s=0.3)
    guarded = GuardedProvider(
        inner, limiter=StripeRateLimiter(100, redis_url=None), breaker=breaker
    )
    try:
        control.post(
            "/_sim/faults", json={"kind": "api_error", "count": 3, "status": 503}
        ).raise_for_status()
        for _ in range(2):
            with pytest.raises(ProviderUnavailable):
                await create(guarded)
        await asyncio.sleep(0.35)
        with pytest.raises(ProviderUnavailable) as info:
            await create(guarded)  # the probe, still failing
        assert info.value.code != "circuit_open"
        assert breaker.state == "open"
        assert len(api_requests(control)) == 3
    finally:
        await guarded.aclose()


async def test_declines_do_not_open_the_breaker(guard_sim, control) -> None:
    inner = StripeProvider(
        API_KEY, api_base=guard_sim.url, max_network_retries=0, timeout=5.0
    )
    breaker = CircuitBreaker(failures=2, reset_s=10.0)
    guarded = GuardedProvider(
        inner, limiter=StripeRateLimiter(100, redis_url=None), breaker=breaker
    )
    try:
        payment = await create(guarded)
        for _ in range(3):
            with pytest.raises(Exception) as info:
                await guarded.confirm_payment(
                    payment.id,
                    payment_method="pm_card_chargeDeclined",
                    return_url=None,
                    idempotency_key=f"{uuid.uuid4()}:confirm",
                )
            assert not isinstance(info.value, ProviderUnavailable)
        assert breaker.state == "closed"
    finally:
        await guarded.aclose()


# --------------------------------------------------------------------------- deadline


async def test_rate_limit_deadline_answers_quickly(guard_sim, control) -> None:
    settings = Settings(
        stripe_rps=3, redis_url=None, stripe_queue_wait_s=0.3, stripe_api_base=guard_sim.url
    )
    inner = StripeProvider(
        API_KEY, api_base=guard_sim.url, max_network_retries=0, timeout=5.0
    )
    guarded = build_guarded_provider(inner, settings)
    try:
        assert not guarded.limit_per_call  # every HTTP request is counted, retries included
        assert guarded.name == "stripe" and guarded.sandbox
        with outbound_deadline(
            time.monotonic() + 5
        ):  # paced 1/3 s apart: longer than the budget
            for _ in range(3):
                await create(guarded)
        started = time.monotonic()
        results = await asyncio.gather(
            *(create(guarded) for _ in range(5)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(r, OutboundRateLimited) for r in results), results
        assert all(r.kind == "rate_limited" and r.retry_after for r in results)  # type: ignore[union-attr]
        assert elapsed < 0.35  # within the 300 ms budget (plus a margin), never a hang
        assert len(api_requests(control)) == 3
        assert (
            guarded.breaker.state == "closed"
        )  # our own refusals are not Stripe's failures
        await guarded.ping()  # busy but healthy: /readyz stays ready without a request
        assert len(api_requests(control)) == 3
    finally:
        await guarded.aclose()
