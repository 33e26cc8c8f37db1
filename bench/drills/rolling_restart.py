"""Rolling restart under load: HAProxy (deploy/haproxy.cfg) in front of several `paymentd serve`
processes, job workers beside them; every process is restarted (SIGTERM, drain, start again)
one after another while a paced load runs. Goal: zero failed client requests (the client does
NOT retry here: every failure counts), zero lost or duplicated payments, no job lost.

    .venv/bin/python bench/drills/rolling_restart.py [--servers 3 --workers 2 --rate 20 --rounds 1]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Load, Stack, check, checks_table, outcome_table, write_result  # noqa: E402


def drill(*, servers: int, workers: int, rate: float, rounds: int, warmup: float, drain_delay: float,
          latency_ms: int, surge: bool = True) -> tuple[dict, str]:
    knobs = {"latency_ms": latency_ms, "latency_p99_ms": latency_ms * 4}
    env = {"PAYMENTD_DRAIN_DELAY_S": str(drain_delay), "PAYMENTD_SHUTDOWN_TIMEOUT_S": "20",
           "PAYMENTD_RECONCILE_AFTER_S": "20", "PAYMENTD_RECONCILE_INTERVAL_S": "10"}
    with Stack(servers=servers, workers=workers, haproxy=True, sim_knobs=knobs, env=env,
               spare=1 if surge else 0) as stack:
        with Load(stack.front_url, stack.key, rate=rate, retry=False) as load:
            time.sleep(warmup)
            event_start = time.monotonic()
            steps = []
            for _ in range(rounds):
                for proc in list(stack.servers):
                    steps.append((proc.name, stack.surge_restart(proc) if surge else stack.restart(proc)))
                for proc in stack.workers:
                    steps.append((proc.name, stack.restart(proc)))
            event_end = time.monotonic()
            time.sleep(warmup)
        after_end = time.monotonic()
        result = check(stack, load.ledger, settle_timeout=300)
        ledger = load.ledger
    failed = sum(ledger.failures(event_start, event_end).values())
    summary = {"requests": len(ledger.samples), "failed_total": sum(ledger.failures().values()),
               "failed_during_restarts": failed, **result}
    body = "\n".join([
        f"{servers} `paymentd serve` (PAYMENTD_RUN_WORKER=false, PAYMENTD_DRAIN_DELAY_S={drain_delay}) behind "
        f"HAProxy (deploy/haproxy.cfg), {workers} `paymentd worker`, the simulator (latency lognormal median "
        f"{latency_ms} ms, so Stripe calls are in flight at every SIGTERM), webhooks delivered through HAProxy. "
        f"Load: {rate} payments/s (create + confirm), no client retries. Every process restarted "
        f"{rounds}x, one after another. "
        + ("API processes by surge: the successor started on HAProxy's spare slot and taken in (/readyz, "
           "`rise`) before the old one gets SIGTERM; " if surge else "API processes in place: ")
        + "workers: SIGTERM, wait for the exit, start again.",
        "",
        outcome_table(ledger, [("before", 0, event_start), ("during restarts", event_start, event_end),
                               ("after", event_end, after_end)]),
        "",
        "| step | exit took s | back in service s |", "| --- | --- | --- |",
        *[f"| {name} | {t['exit_s']} | {t['back_s']} |" for name, t in steps],
        "",
        *checks_table(summary),
    ])
    return summary, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--drain-delay", type=float, default=3.0)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--in-place", action="store_true",
                        help="restart each API process on its own port (capacity drops by one meanwhile)")
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    _, body = drill(servers=args.servers, workers=args.workers, rate=args.rate, rounds=args.rounds,
                    warmup=args.warmup, drain_delay=args.drain_delay, latency_ms=args.latency_ms, surge=not args.in_place)
    write_result("drill-rolling-restart", "Drill: rolling restart under load",
                 shlex.join([".venv/bin/python", "bench/drills/rolling_restart.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
