"""Scale out: the paced capacity of one API process and a worker, against two (and three) API
processes and a worker behind HAProxy, on this machine.

Paced capacity: the highest offered rate (payments a second, create + confirm, paced, no client
retries) that a configuration serves for `--step-s` seconds with no failed request, no more than
5% of confirms answered 202 (the response budget ran out: slower than Stripe's own time allows),
and a client p99 under 1 s. Rates are tried upward in `--steps`; each configuration gets a fresh
stack, so the ratio is measured in one run, under the same neighbours.

    .venv/bin/python bench/drills/scale_out.py [--steps 10 15 20 25 30 35 40 50 60] [--configs 1 2 3]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Load, Stack, write_result  # noqa: E402


def holds(load: Load, since: float) -> tuple[bool, str]:
    ledger = load.ledger
    counts = ledger.counts(since)
    failed = sum(ledger.failures(since).values())
    confirms = [s for s in ledger.samples if s.at >= since and s.op == "confirm"]
    late = sum(s.kind == "202" for s in confirms) / max(len(confirms), 1)
    p99 = ledger.p99(since)
    ok = failed == 0 and late <= 0.05 and p99 < 1000
    return ok, f"{sum(counts.values())} requests, {failed} failed, {late:.0%} confirms 202, p99 {p99} ms"


def capacity(servers: int, steps: list[float], step_s: float) -> tuple[float, list[str]]:
    notes, best = [], 0.0
    with Stack(servers=servers, workers=1, haproxy=servers > 1,
               sim_knobs={"latency_ms": 100, "latency_p99_ms": 400}) as stack:
        for rate in steps:
            with Load(stack.front_url, stack.key, rate=rate) as load:
                time.sleep(2)  # the first requests of a step pay for its connections
                since = time.monotonic()
                time.sleep(step_s)
            ok, text = holds(load, since)
            notes.append(f"| {servers} | {rate} | {'holds' if ok else 'fails'} | {text} |")
            if not ok:
                break
            best = rate
            time.sleep(2)
    return best, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=float, nargs="+", default=[10, 15, 20, 25, 30, 35, 40, 50, 60])
    parser.add_argument("--configs", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--step-s", type=float, default=15.0)
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    results, rows = {}, []
    for servers in args.configs:
        results[servers], notes = capacity(servers, args.steps, args.step_s)
        rows += notes
    base = results.get(1) or 0
    body = "\n".join([
        "Each configuration: N `paymentd serve` (no worker inside; HAProxy in front when N > 1), 1 `paymentd "
        "worker`, the simulator at 100 ms median, everything (and the load generator) on this machine's "
        f"cores. Steps of {args.step_s} s, paced, no client retries.",
        "",
        "| API processes | payments/s offered | verdict | detail |", "| --- | --- | --- | --- |", *rows,
        "",
        "| API processes | paced capacity (payments/s) | vs one |", "| --- | --- | --- |",
        *[f"| {n} | {c} | {c / base:.2f}x |" if base else f"| {n} | {c} | - |" for n, c in results.items()],
    ])
    write_result("drill-scale-out", "Drill: paced capacity of 1, 2 and 3 API processes",
                 shlex.join([".venv/bin/python", "bench/drills/scale_out.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
