"""Redis lost under load: the Redis that shares the Stripe rate limit (the drill's own
redis-server) is stopped for a while, then started again. Goal: paymentd keeps serving, each
process at its share of the Stripe limit (PAYMENTD_STRIPE_PROCESSES), never more than the limit
in total at "Stripe" (the simulator's log); /readyz says degraded (still 200) on every API
process; the shared limit comes back by itself.

    .venv/bin/python bench/drills/redis_lost.py [--rate 6 --stripe-rps 20 --lost-s 30]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Load, Stack, check, checks_table, outcome_table, wait_until, write_result  # noqa: E402

from tests.support.cluster import max_per_second  # noqa: E402


def readiness(stack: Stack) -> list[tuple[int, str, str]]:
    seen = []
    for server in stack.servers:
        answer = httpx.get(f"{server.url}/readyz", timeout=10)
        body = answer.json()
        seen.append((answer.status_code, body.get("status", ""), body.get("stripe_limiter", {}).get("mode", "")))
    return seen


def drill(*, rate: float, stripe_rps: int, lost_s: float, warmup: float) -> tuple[dict[str, Any], str]:
    env = {"PAYMENTD_STRIPE_RPS": str(stripe_rps), "PAYMENTD_REDIS_RETRY_S": "2"}
    with Stack(servers=2, workers=1, haproxy=True, redis="own", env=env,
               sim_knobs={"latency_ms": 100, "latency_p99_ms": 400, "rate_limit_rps": stripe_rps}) as stack:
        assert stack.redis is not None
        with Load(stack.front_url, stack.key, rate=rate, retry=True) as load:
            time.sleep(warmup)
            lost_at, lost_wall = time.monotonic(), time.time()
            stack.redis.stop()
            time.sleep(3)
            during = readiness(stack)
            time.sleep(max(lost_s - 3, 0))
            stack.redis.start()
            back_at, back_wall = time.monotonic(), time.time()
            shared_again_s = wait_until(lambda: all(r[2] == "shared" for r in readiness(stack)), 30,
                                        "every process sharing the limit again", interval=0.5)
            time.sleep(warmup)
            ended = time.monotonic()
        after = readiness(stack)
        log = stack.sim("GET", "/_sim/requests")["data"]
        result = check(stack, load.ledger)
        ledger = load.ledger
    stamps = [r["timestamp"] for r in log if r["path"].startswith("/v1/")]
    outage = [t for t in stamps if lost_wall <= t < back_wall]
    summary = {
        "requests": len(ledger.samples),
        "failed_total": sum(ledger.failures().values()),
        "Stripe requests in any 1 s while Redis was lost (limit)": f"{max_per_second(outage)} ({stripe_rps})",
        "Stripe requests in any 1 s, whole run (limit)": f"{max_per_second(stamps)} ({stripe_rps})",
        "Stripe's own 429s": sum(1 for r in log if r.get("status") == 429),
        "readyz during (status, body status, limiter)": during,
        "readyz after": after,
        "every process back on the shared limit s after Redis": round(shared_again_s, 1),
        **result,
    }
    body = "\n".join([
        f"2 `paymentd serve` behind HAProxy and 1 `paymentd worker` (PAYMENTD_STRIPE_PROCESSES=3), a drill-owned "
        f"redis-server stopped for {lost_s} s, then started. Stripe limit PAYMENTD_STRIPE_RPS={stripe_rps} (aimed "
        f"10% under), enforced by the simulator too. Load: {rate} payments/s (create + confirm), the client "
        "retrying transient answers with the same Idempotency-Key.",
        "",
        outcome_table(ledger, [("before", 0, lost_at), ("Redis lost", lost_at, back_at),
                               ("after", back_at, ended)]),
        "",
        *checks_table(summary),
    ])
    return summary, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=6.0)
    parser.add_argument("--stripe-rps", type=int, default=20)
    parser.add_argument("--lost-s", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    _, body = drill(rate=args.rate, stripe_rps=args.stripe_rps, lost_s=args.lost_s, warmup=args.warmup)
    write_result("drill-redis-lost", "Drill: the rate limiter's Redis lost under load",
                 shlex.join([".venv/bin/python", "bench/drills/redis_lost.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
