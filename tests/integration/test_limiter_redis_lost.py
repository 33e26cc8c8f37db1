"""The shared Stripe limit when its Redis goes away and comes back (a Redis of the test's own,
on its own port, stopped and started): each process keeps calling Stripe at its share of the
limit, says so, and counts in Redis again once it is back."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator

import prometheus_client
import pytest
import redis

from paymentd.providers.limiter import OutboundRateLimited, StripeRateLimiter


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OwnRedis:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save",
                                         "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_timeout=0.5).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def granted_within(limiter: StripeRateLimiter, seconds: float) -> int:
    """How many slots one burst gets within `seconds` (each caller's deadline)."""
    deadline = time.monotonic() + seconds
    results = await asyncio.gather(*(limiter.acquire(deadline) for _ in range(60)), return_exceptions=True)
    assert all(r is None or isinstance(r, OutboundRateLimited) for r in results), results
    return sum(r is None for r in results)


def shared_gauge() -> float | None:
    return prometheus_client.REGISTRY.get_sample_value("paymentd_stripe_limiter_shared")


async def test_redis_lost_means_a_share_of_the_limit_then_the_shared_limit_again(own_redis: OwnRedis) -> None:
    limiter = StripeRateLimiter(20, redis_url=own_redis.url, processes=4, retry_s=0.5, spacing_s=0,
                                key_prefix=f"test-lost-{time.monotonic_ns()}")
    try:
        assert limiter.describe()["mode"] == "shared"
        assert await granted_within(limiter, 1.0) == 20  # the whole limit, counted in Redis
        await asyncio.sleep(1.3)

        own_redis.stop()
        assert await granted_within(limiter, 1.0) == 5  # 20 / 4 processes: never above the limit together
        assert limiter.degraded
        described = limiter.describe()
        assert (described["mode"], described["rps"], described["limit_rps"]) == ("degraded", 5, 20)
        assert shared_gauge() == 0

        own_redis.start()
        await asyncio.sleep(1.3)  # past retry_s and the window
        await limiter.probe()
        assert not limiter.degraded and limiter.describe()["mode"] == "shared"
        assert shared_gauge() == 1
        # Just back: still within its share until every process has seen Redis back...
        assert await granted_within(limiter, 1.0) == 5
        await asyncio.sleep(2.0)
        # ...then the whole limit again.
        assert await granted_within(limiter, 1.0) == 20
    finally:
        await limiter.aclose()


async def test_an_unreachable_redis_from_the_start_is_a_share_and_answers_fast() -> None:
    limiter = StripeRateLimiter(12, redis_url=f"redis://127.0.0.1:{free_port()}/0", processes=3, spacing_s=0)
    started = time.monotonic()
    assert await granted_within(limiter, 1.0) == 4
    assert time.monotonic() - started < 2.5  # a refused Redis is skipped, never waited on per call
    assert limiter.degraded
    await limiter.aclose()


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StripeRateLimiter(10, redis_url=None, processes=0)


def test_readyz_says_degraded_while_redis_is_lost_and_ready_again_after(own_redis: OwnRedis, settings) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from paymentd.app import create_app
    from tests.support.servers import ThreadedServer

    configured = settings.model_copy(update={"redis_url": own_redis.url, "stripe_processes": 3,
                                             "redis_retry_s": 0.5,
                                             "redis_key_prefix": f"test-readyz-{time.monotonic_ns()}"})
    server = ThreadedServer(create_app(configured)).start()
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["status"] == "ready" and ready["stripe_limiter"]["mode"] == "shared"

        own_redis.stop()
        answer = httpx.get(f"{server.url}/readyz", timeout=10)
        assert answer.status_code == 200  # still serving: a front must not take it out
        body = answer.json()
        assert body["status"] == "degraded"
        limiter = body["stripe_limiter"]
        # The configured limit (100) is aimed 10% under (90); a third of that per process.
        assert (limiter["mode"], limiter["rps"], limiter["limit_rps"], limiter["processes"]) == (
            "degraded", 30, 90, 3)
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        assert "paymentd_stripe_limiter_shared 0.0" in metrics

        own_redis.start()
        time.sleep(0.7)
        back = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert back["status"] == "ready" and back["stripe_limiter"]["mode"] == "shared"
        assert "paymentd_stripe_limiter_shared 1.0" in httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
