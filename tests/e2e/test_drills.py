"""Short versions of the availability drills (bench/drills/): real processes, real signals.

The full drills run longer and write bench/results/; these keep the same checks small enough
for `make test` (each under about a minute on the shared two-core machine).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "drills"))

from harness import Load, Stack, check, wait_until  # noqa: E402

from tests.support.databases import DEFAULT_ADMIN_URL  # noqa: E402

pytestmark = pytest.mark.slow
ADMIN = os.environ.get("PAYMENTD_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def test_sigterm_answers_draining_first_finishes_the_request_in_flight_then_exits() -> None:
    env = {"PAYMENTD_DRAIN_DELAY_S": "5", "PAYMENTD_SHUTDOWN_TIMEOUT_S": "10"}  # 5 s: a loaded machine may stall us
    with Stack(servers=1, workers=0, redis="none", webhooks=False, env=env, admin_url=ADMIN,
               sim_knobs={"latency_by_operation": {"POST /v1/payment_intents/{intent}/confirm":
                                                   {"latency_ms": 2500}}}) as stack:
        server = stack.servers[0]
        auth = {"Authorization": f"Bearer {stack.key}"}
        user = httpx.post(f"{server.url}/api/users", json={"email": "d@x.co", "name": "D"}, headers=auth).json()
        payment = httpx.post(f"{server.url}/api/payments/create", json={"user_id": user["id"], "amount": "5.00"},
                             headers=auth, timeout=30).json()
        answers: dict[str, httpx.Response] = {}

        def confirm() -> None:  # still waiting on "Stripe" when SIGTERM arrives
            answers["confirm"] = httpx.post(
                f"{server.url}/api/payments/confirm", timeout=30,
                json={"payment_id": payment["id"], "payment_method": "pm_card_visa"},
                headers={**auth, "Idempotency-Key": f"drain-{payment['id']}", "Prefer": "wait=10"})

        caller = threading.Thread(target=confirm)
        caller.start()
        time.sleep(0.8)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        alive = httpx.get(f"{server.url}/healthz", timeout=5)
        assert alive.status_code == 200
        assert alive.headers["connection"] == "close"  # keep-alive clients move elsewhere
        caller.join(timeout=30)
        assert answers["confirm"].status_code == 200, answers["confirm"].text
        assert answers["confirm"].json()["status"] == "succeeded"
        # uvicorn re-raises the SIGTERM it handled once shut down; serve unwinds it through its
        # cleanup and exits 143 (128 + SIGTERM): "terminated, as asked"
        assert server.process.wait(timeout=30) in (0, 143)
        took = time.monotonic() - signalled
        assert 5 <= took < 5 + 10 + 10  # the drain delay, then at most the bound (and exit)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=2)


def test_rolling_restart_behind_haproxy_fails_no_request_and_loses_nothing() -> None:
    env = {"PAYMENTD_DRAIN_DELAY_S": "3", "PAYMENTD_SHUTDOWN_TIMEOUT_S": "15"}
    with Stack(servers=2, workers=1, haproxy=True, spare=1, env=env, admin_url=ADMIN,
               sim_knobs={"latency_ms": 100, "latency_p99_ms": 400}) as stack:
        with Load(stack.front_url, stack.key, rate=6, retry=False) as load:
            time.sleep(2)
            for server in list(stack.servers):
                stack.surge_restart(server)
            stack.restart(stack.workers[0])
            time.sleep(2)
        result = check(stack, load.ledger, settle_timeout=60)
    assert load.ledger.failures() == {}, load.ledger.failures()
    assert result["payments_created_acknowledged"] > 50
    assert result["lost_payments"] == 0, result["lost_detail"]
    assert result["duplicated_payments"] == 0, result["duplicated_detail"]
    assert (result["jobs_failed"], result["jobs_unfinished"], result["webhooks_unprocessed"]) == (0, 0, 0), result


def test_redis_lost_under_load_serves_at_a_share_says_degraded_and_shares_again() -> None:
    from tests.support.cluster import max_per_second

    env = {"PAYMENTD_STRIPE_RPS": "20", "PAYMENTD_STRIPE_PROCESSES": "2", "PAYMENTD_REDIS_RETRY_S": "1"}
    with Stack(servers=1, workers=0, redis="own", webhooks=False, env=env, admin_url=ADMIN,
               sim_knobs={"latency_ms": 50, "rate_limit_rps": 20}) as stack:
        server = stack.servers[0]
        with Load(stack.front_url, stack.key, rate=3, retry=False) as load:
            time.sleep(2)
            lost_wall = time.time()
            stack.redis.stop()
            time.sleep(4)
            during = httpx.get(f"{server.url}/readyz", timeout=10)
            assert during.status_code == 200, during.text
            assert during.json()["status"] == "degraded"
            # 20/s aimed 10% under (18), half of it for each of the 2 processes.
            assert during.json()["stripe_limiter"] == {
                "mode": "degraded", "rps": 9, "limit_rps": 18, "processes": 2,
                "reason": "Redis unreachable: this process limits itself to its share of the Stripe limit"}
            assert "paymentd_stripe_limiter_shared 0.0" in httpx.get(f"{server.url}/metrics", timeout=10).text
            time.sleep(2)
            stack.redis.start()
            back_wall = time.time()
            wait_until(lambda: httpx.get(f"{server.url}/readyz", timeout=10).json()["status"] == "ready", 20,
                       "the shared limit again")
            time.sleep(1)
        log = stack.sim("GET", "/_sim/requests")["data"]
        result = check(stack, load.ledger, settle_timeout=60)
    assert load.ledger.failures() == {}, load.ledger.failures()
    outage = [r["timestamp"] for r in log if r["path"].startswith("/v1/") and lost_wall <= r["timestamp"] < back_wall]
    assert outage and max_per_second(outage) <= 9
    assert result["lost_payments"] == 0 and result["duplicated_payments"] == 0, result
