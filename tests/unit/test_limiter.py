"""The outbound rate limiter on in-process storage: N per any one-second window, first come
first served, a deadline always answered (OutboundRateLimited) and never a hang."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from paymentd.providers.base import ProviderUnavailable
from paymentd.providers.limiter import (
    OutboundRateLimited,
    StripeRateLimiter,
    current_deadline,
    endpoint_of,
    outbound_deadline,
)


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_n_per_window_then_the_rest_wait_their_turn() -> None:
    limiter = StripeRateLimiter(5, redis_url=None, spacing_s=0)  # bursts allowed
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire(time.monotonic() + 5)
        granted.append(time.monotonic())

    start = time.monotonic()
    await asyncio.gather(*(one() for _ in range(12)))
    assert len(granted) == 12
    assert max_in_any_window(granted) <= 5
    assert sum(1 for t in granted if t - start < 0.5) == 5  # the first five go at once
    assert 2.0 <= granted[-1] - start < 3.5  # 12 at 5/s: two full windows later
    assert limiter.waiting == 0


async def test_grants_from_one_process_are_paced() -> None:
    limiter = StripeRateLimiter(20, redis_url=None)  # default spacing: 1/rps = 50 ms
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire(time.monotonic() + 5)
        granted.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(6)))
    gaps = [b - a for a, b in itertools.pairwise(granted)]
    assert min(gaps) >= 0.045


async def test_waiters_are_served_first_come_first_served() -> None:
    limiter = StripeRateLimiter(3, redis_url=None)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire(time.monotonic() + 5)
        order.append(i)

    tasks = []
    for i in range(9):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.01)  # arrive in order
    await asyncio.gather(*tasks)
    assert order == list(range(9))


async def test_deadline_gives_rate_limited_quickly_and_frees_the_queue() -> None:
    limiter = StripeRateLimiter(2, redis_url=None)
    for _ in range(2):
        await limiter.acquire(time.monotonic() + 1)
    start = time.monotonic()
    with pytest.raises(OutboundRateLimited) as info:
        await limiter.acquire(time.monotonic() + 0.2)
    elapsed = time.monotonic() - start
    # The next slot is ~1 s away, past the deadline: refused without waiting it out.
    assert elapsed < 0.25
    err = info.value
    assert isinstance(err, ProviderUnavailable)
    assert err.kind == "rate_limited"
    assert err.retry_after is not None and 0 < err.retry_after <= 1.1
    assert limiter.waiting == 0


async def test_a_deadline_in_the_past_is_refused_at_once() -> None:
    limiter = StripeRateLimiter(100, redis_url=None)
    with pytest.raises(OutboundRateLimited):
        await limiter.acquire(time.monotonic() - 1)


async def test_a_long_queue_never_hangs_anyone() -> None:
    limiter = StripeRateLimiter(4, redis_url=None, spacing_s=0)
    deadline = time.monotonic() + 0.6
    results = await asyncio.wait_for(
        asyncio.gather(
            *(limiter.acquire(deadline) for _ in range(40)), return_exceptions=True
        ),
        2.0,
    )
    granted = [r for r in results if r is None]
    refused = [r for r in results if isinstance(r, OutboundRateLimited)]
    assert len(granted) == 4
    assert len(refused) == 36
    assert time.monotonic() <= deadline + 0.1
    assert limiter.waiting == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    limiter = StripeRateLimiter(1, redis_url=None)
    await limiter.acquire(time.monotonic() + 1)
    waiting = asyncio.create_task(limiter.acquire(time.monotonic() + 5))
    await asyncio.sleep(0.05)
    after = asyncio.create_task(limiter.acquire(time.monotonic() + 5))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(
        after, 2.0
    )  # the one behind it moved up and got the next slot
    assert limiter.waiting == 0


async def test_per_endpoint_limit_is_stricter_and_counts_globally() -> None:
    limiter = StripeRateLimiter(
        10, redis_url=None, per_endpoint={"POST /v1/refunds": 2}, spacing_s=0
    )
    # One caller at a time: this is about what counts against which window, not about the
    # queue (whose refusal of callers too far back to be reached in time depends on timing).
    # Each deadline is under the one-second window, so a caller over a limit is refused.
    async def outcome(endpoint: str) -> object:
        try:
            return await limiter.acquire(time.monotonic() + 0.5, endpoint=endpoint)
        except OutboundRateLimited as refused:
            return refused

    refunds = [await outcome("POST /v1/refunds") for _ in range(4)]
    assert sum(r is None for r in refunds) == 2
    others = [await outcome("POST /v1/payment_intents") for _ in range(10)]
    assert sum(r is None for r in others) == 8  # 10 global, 2 already used by refunds


def test_stripe_documented_endpoint_limits_by_default() -> None:
    limiter = StripeRateLimiter(100, redis_url=None)
    assert limiter.limit_for("GET /v1/payment_intents/search") is not None
    assert limiter.limit_for("GET /v1/payment_intents/search")[1].amount == 20  # type: ignore[index]
    assert limiter.limit_for("POST files:/v1/files")[1].amount == 20  # type: ignore[index]
    assert limiter.limit_for("POST /v1/payment_intents") is None
    star = StripeRateLimiter(100, redis_url=None, per_endpoint={"*": 25})
    assert star.limit_for("POST /v1/payment_intents")[1].amount == 25  # type: ignore[index]


def test_endpoint_of_names_stripe_endpoints() -> None:
    assert (
        endpoint_of("post", "http://sim/v1/payment_intents")
        == "POST /v1/payment_intents"
    )
    assert (
        endpoint_of(
            "POST",
            "https://api.stripe.com/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/confirm",
        )
        == "POST /v1/payment_intents/{id}/confirm"
    )
    assert (
        endpoint_of(
            "GET",
            "https://api.stripe.com/v1/customers/cus_NffrFeUfNV2Hib/payment_methods?limit=1",
        )
        == "GET /v1/customers/{id}/payment_methods"
    )
    assert endpoint_of(
        "GET", "https://api.stripe.com/v1/payment_intents/search?query=x"
    ) == ("GET /v1/payment_intents/search")
    assert endpoint_of("POST", "https://files.stripe.com/v1/files").startswith(
        "POST files:"
    )


def test_outbound_deadline_context() -> None:
    assert current_deadline(5.0) == pytest.approx(time.monotonic() + 5.0, abs=0.05)
    with outbound_deadline(123.0):
        assert current_deadline(5.0) == 123.0
    assert current_deadline(0.0) == pytest.approx(time.monotonic(), abs=0.05)


def test_rps_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StripeRateLimiter(0, redis_url=None)
