"""Stripe outage under load: the simulator answers every request with a 500 for 60 s, then (a
second event) stops answering for 60 s (connections held, then closed: the `timeout` fault).
Goal: the breaker opens; callers get fast answers (202 where paymentd accepted the work, 503 +
Retry-After where it did not); nothing is charged twice; within a minute of Stripe's return every
accepted payment is settled.

    .venv/bin/python bench/drills/stripe_outage.py [--rate 10 --outage-s 60]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Ledger, Load, Stack, check, checks_table, outcome_table, write_result  # noqa: E402


def answered_fast(ledger: Ledger, since: float, until: float) -> str:
    failed = sorted(s.ms for s in ledger.samples if since <= s.at < until and s.kind != "ok")
    if not failed:
        return "no non-200 answers"
    return f"{len(failed)} answers other than 200; median {failed[len(failed) // 2]:.0f} ms, max {failed[-1]:.0f} ms"


def drill(*, rate: float, outage_s: float, warmup: float) -> tuple[dict, str]:
    env = {"PAYMENTD_RECONCILE_AFTER_S": "20", "PAYMENTD_RECONCILE_INTERVAL_S": "10"}
    with Stack(servers=2, workers=1, haproxy=True, env=env,
               sim_knobs={"latency_ms": 100, "latency_p99_ms": 400}) as stack:
        def knobs(**values: object) -> None:
            httpx.post(f"{stack.sim_url}/_sim/config", json=values, timeout=10).raise_for_status()

        windows = []
        with Load(stack.front_url, stack.key, rate=rate, retry=True) as load:
            time.sleep(warmup)
            windows.append(("before", 0.0, time.monotonic()))
            for name, fault in (("500s", {"api_error": 1.0}), ("no answer", {"timeout": 1.0})):
                began = time.monotonic()
                knobs(fault_rates=fault, error_status=500, hang_s=20)
                time.sleep(outage_s)
                knobs(fault_rates={})
                back = time.monotonic()
                windows.append((f"Stripe {name}", began, back))
                time.sleep(warmup * 2)
                windows.append((f"after {name}", back, time.monotonic()))
        result = check(stack, load.ledger)
        ledger = load.ledger
        breaker = [httpx.get(f"{s.url}/readyz", timeout=5).json().get("circuit") for s in stack.servers]
    summary = {
        "requests": len(ledger.samples),
        "gave_up (client abandoned after 40 tries)": dict(ledger.gave_up),
        "answers during 500s": answered_fast(ledger, windows[1][1], windows[1][2]),
        "answers during no answer": answered_fast(ledger, windows[3][1], windows[3][2]),
        "settled s after the last return (check's wait)": result["settle_s"],
        "circuit at the end": breaker,
        **result,
    }
    body = "\n".join([
        f"2 `paymentd serve` behind HAProxy, 1 `paymentd worker` (reconciler: after 20 s, every 10 s), the "
        f"simulator at 100 ms median. Load: {rate} payments/s (create + confirm), the client retrying "
        "409/429/5xx and connection errors with the same Idempotency-Key after Retry-After (at most 40 "
        f"tries). Two events of {outage_s} s: every Stripe request answered 500, then every request held "
        "20 s and its connection closed (paymentd's Stripe timeout is 10 s).",
        "",
        outcome_table(ledger, windows),
        "",
        *checks_table(summary),
    ])
    return summary, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    _, body = drill(rate=args.rate, outage_s=args.outage_s, warmup=args.warmup)
    write_result("drill-stripe-outage", "Drill: Stripe outage (500s, then no answer) under load",
                 shlex.join([".venv/bin/python", "bench/drills/stripe_outage.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
