"""PostgreSQL restarted, then stopped for 30 s, under load (a PostgreSQL cluster of the drill's
own, never the shared one). Goal: while it is gone requests fail fast with 503 + Retry-After
(never hang); the client, retrying with its Idempotency-Key, gets every payment through once it
is back; every payment whose Stripe call happened is recorded; nothing is charged twice; the
pools recover without restarting paymentd.

    .venv/bin/python bench/drills/postgres_outage.py [--rate 15 --stop-s 30]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Ledger, Load, Stack, check, checks_table, outcome_table, write_result  # noqa: E402


def recovered_after(ledger: Ledger, back_at: float, until: float = float("inf")) -> float:
    """Seconds from PostgreSQL's return to the last failed request sent (before `until`)."""
    failed = [s.at for s in ledger.samples if s.kind not in ("ok", "202") and back_at - 60 <= s.at < until]
    return round(max(0.0, max(failed) - back_at), 2) if failed else 0.0


def slowest_failure_ms(ledger: Ledger, since: float, until: float) -> float:
    values = [s.ms for s in ledger.samples if since <= s.at < until and s.kind not in ("ok", "202")]
    return round(max(values), 1) if values else 0.0


def drill(*, rate: float, stop_s: float, warmup: float) -> tuple[dict, str]:
    env = {"PAYMENTD_RECONCILE_AFTER_S": "20", "PAYMENTD_RECONCILE_INTERVAL_S": "10"}
    with Stack(servers=2, workers=1, haproxy=True, own_postgres=True, env=env,
               sim_knobs={"latency_ms": 100, "latency_p99_ms": 400}) as stack:
        assert stack.postgres is not None
        with Load(stack.front_url, stack.key, rate=rate, retry=True) as load:
            time.sleep(warmup)
            restart_at = time.monotonic()
            stack.postgres.restart()
            restart_back = time.monotonic()
            time.sleep(warmup)
            stop_at = time.monotonic()
            stack.postgres.stop()
            time.sleep(stop_s)
            stack.postgres.start()
            stop_back = time.monotonic()
            time.sleep(warmup * 2)
            ended = time.monotonic()
        alive = {p.name: p.alive() for p in [*stack.servers, *stack.workers]}
        result = check(stack, load.ledger)
        ledger = load.ledger
    summary = {
        "requests": len(ledger.samples),
        "failed_total": sum(ledger.failures().values()),
        "gave_up (client abandoned after 40 tries)": dict(ledger.gave_up),
        "restart: PostgreSQL down s": round(restart_back - restart_at, 2),
        "restart: failures until s after back": recovered_after(ledger, restart_back, stop_at),
        "stop: failures until s after back": recovered_after(ledger, stop_back),
        "slowest failed answer ms (stop)": slowest_failure_ms(ledger, stop_at, stop_back),
        "processes still running (never restarted)": alive,
        **result,
    }
    body = "\n".join([
        f"2 `paymentd serve` behind HAProxy, 1 `paymentd worker`, a drill-owned PostgreSQL 15 "
        f"(`pg_ctl restart -m fast`, then `pg_ctl stop -m fast` for {stop_s} s and start). Load: {rate} "
        "payments/s (create + confirm), the client retrying 409/429/5xx and connection errors with the "
        "same Idempotency-Key after Retry-After (at most 40 tries). Allowed failures: 503 + Retry-After "
        "while PostgreSQL is away; every such answer is counted below.",
        "",
        outcome_table(ledger, [("before", 0, restart_at), ("restart", restart_at, stop_at),
                               ("stopped", stop_at, stop_back), ("after", stop_back, ended)]),
        "",
        *checks_table(summary),
    ])
    return summary, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=15.0)
    parser.add_argument("--stop-s", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    _, body = drill(rate=args.rate, stop_s=args.stop_s, warmup=args.warmup)
    write_result("drill-postgres", "Drill: PostgreSQL restart and 30 s stop under load",
                 shlex.join([".venv/bin/python", "bench/drills/postgres_outage.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
