"""The circuit breaker's transitions, driven by a fake clock: it opens only on outages, fails
fast with Retry-After while open, lets exactly one probe through, and the probe decides."""

from __future__ import annotations

import pytest

from paymentd.providers.base import (
    ProviderDeclined,
    ProviderInvalidRequest,
    ProviderUnavailable,
)
from paymentd.providers.breaker import CircuitBreaker
from paymentd.providers.limiter import OutboundRateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def outage(kind: str = "server") -> ProviderUnavailable:
    return ProviderUnavailable("boom", kind=kind)  # type: ignore[arg-type]


async def ok() -> str:
    return "ok"


def failing(exc: BaseException):
    async def fn() -> str:
        raise exc

    return fn


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failures=3, reset_s=10.0, clock=clock)


async def trip(breaker: CircuitBreaker, n: int = 3) -> None:
    for _ in range(n):
        with pytest.raises(ProviderUnavailable):
            await breaker.call(failing(outage()))


async def test_opens_after_consecutive_outages(breaker: CircuitBreaker) -> None:
    await trip(breaker, 2)
    assert breaker.state == "closed"
    await trip(breaker, 1)
    assert breaker.state == "open"
    assert breaker.opened_count == 1


@pytest.mark.parametrize("kind", ["connection", "timeout", "server"])
async def test_every_outage_kind_counts(breaker: CircuitBreaker, kind: str) -> None:
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await breaker.call(failing(outage(kind)))
    assert breaker.state == "open"


async def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    await trip(breaker, 2)
    assert await breaker.call(ok) == "ok"
    await trip(breaker, 2)
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    "exc",
    [
        ProviderDeclined("card declined", decline_code="generic_decline"),
        ProviderInvalidRequest("bad param"),
        ProviderUnavailable("stripe 429", kind="rate_limited"),
        ProviderUnavailable("lock", kind="conflict"),
        OutboundRateLimited("ours", retry_after=0.1),
        ValueError("our bug"),
    ],
)
async def test_answers_and_local_refusals_never_open_it(
    breaker: CircuitBreaker, exc: Exception
) -> None:
    await trip(breaker, 2)
    for _ in range(5):
        with pytest.raises(type(exc)):
            await breaker.call(failing(exc))
    assert breaker.state == "closed"
    # A Stripe answer (decline, 4xx, 429) proves Stripe is up and resets the count; our own
    # refusals and bugs say nothing, so the two outages before still count.
    await trip(breaker, 1)
    expected = "open" if isinstance(exc, OutboundRateLimited | ValueError) else "closed"
    assert breaker.state == expected


async def test_open_fails_fast_with_retry_after(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.now += 4.0
    called = False

    async def fn() -> str:
        nonlocal called
        called = True
        return "ok"

    with pytest.raises(ProviderUnavailable) as info:
        await breaker.call(fn)
    assert not called
    assert info.value.kind == "server"
    assert info.value.code == "circuit_open"
    assert info.value.retry_after == pytest.approx(6.0)
    assert breaker.retry_after == pytest.approx(6.0)


async def test_half_open_lets_one_probe_and_success_closes(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.now += 10.0
    assert breaker.state == "half_open"
    probe = breaker.admit()
    assert probe is True
    # While the probe is out, everyone else still fails fast.
    with pytest.raises(ProviderUnavailable) as info:
        breaker.admit()
    assert info.value.retry_after is not None and info.value.retry_after <= 1.0
    breaker.success(probe)
    assert breaker.state == "closed"
    assert await breaker.call(ok) == "ok"


async def test_failed_probe_reopens_for_a_full_reset(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.now += 11.0
    with pytest.raises(ProviderUnavailable):
        await breaker.call(failing(outage("timeout")))
    assert breaker.state == "open"
    assert breaker.retry_after == pytest.approx(10.0)
    assert breaker.opened_count == 2
    clock.now += 9.9
    with pytest.raises(ProviderUnavailable):
        await breaker.call(ok)
    clock.now += 0.1
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"


async def test_abandoned_probe_frees_the_slot(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    await trip(breaker)
    clock.now += 10.0
    with pytest.raises(OutboundRateLimited):
        await breaker.call(failing(OutboundRateLimited("no slot", retry_after=0.1)))
    assert breaker.state == "half_open"
    assert breaker.admit() is True  # the next call may probe


async def test_late_results_of_calls_admitted_before_opening_are_ignored(
    breaker: CircuitBreaker,
) -> None:
    slow = breaker.admit()
    await trip(breaker)
    breaker.success(slow)
    assert breaker.state == "open"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(1, 0.0)
