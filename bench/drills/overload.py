"""Overload: twice the sustainable load for a minute against one `paymentd serve` and a worker.
Goal: paymentd sheds with 503 + Retry-After rather than slowing everyone; /healthz and /readyz
keep answering (polled twice a second throughout); it recovers by itself when the load drops.

    .venv/bin/python bench/drills/overload.py [--rate 12 --factor 2 --overload-s 60]

`--rate` is the load this machine sustains with no failure (the "before" row shows whether it
did); the client does not retry here, so every shed request is counted once.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Ledger, Load, Stack, check, checks_table, outcome_table, write_result  # noqa: E402


class Prober:
    """/healthz and /readyz twice a second: status and latency of each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, str, int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                for path in ("/healthz", "/readyz"):
                    sent = time.monotonic()
                    try:
                        status = client.get(f"{self.url}{path}").status_code
                    except httpx.HTTPError:
                        status = 0
                    self.seen.append((sent, path, status, (time.monotonic() - sent) * 1000))
                self._stop.wait(0.5)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, since: float, until: float) -> str:
        rows = [r for r in self.seen if since <= r[0] < until]
        parts = []
        for path in ("/healthz", "/readyz"):
            mine = [r for r in rows if r[1] == path]
            if not mine:
                continue
            statuses = Counter(r[2] for r in mine)
            slowest = max(r[3] for r in mine)
            parts.append(f"{path}: {dict(statuses)}, slowest {slowest:.0f} ms")
        return "; ".join(parts)


def recovered_s(ledger: Ledger, since: float) -> float:
    shed = [s.at for s in ledger.samples if s.at >= since and s.kind not in ("ok", "202")]
    return round(max(shed) - since, 1) if shed else 0.0


def drill(*, rate: float, factor: float, overload_s: float, warmup: float) -> tuple[dict, str]:
    with Stack(servers=1, workers=1, sim_knobs={"latency_ms": 100, "latency_p99_ms": 400}) as stack:
        server = stack.servers[0]
        with Prober(server.url) as prober:
            with Load(stack.front_url, stack.key, rate=rate) as base:
                time.sleep(warmup)
                began = time.monotonic()
                with Load(stack.front_url, stack.key, rate=rate * (factor - 1)) as extra:
                    time.sleep(overload_s)
                ended = time.monotonic()
                time.sleep(warmup * 2)
                done = time.monotonic()
        ledger = Ledger(samples=sorted(base.ledger.samples + extra.ledger.samples, key=lambda s: s.at),
                        created={**base.ledger.created, **extra.ledger.created},
                        confirm_accepted=base.ledger.confirm_accepted | extra.ledger.confirm_accepted)
        result = check(stack, ledger)
    windows = [("before", 0, began), (f"{factor}x load", began, ended), ("after", ended, done)]
    summary = {
        "requests": len(ledger.samples),
        "shed (503 + Retry-After)": sum(n for k, n in ledger.failures().items() if k.startswith("http 503")),
        "other failures": sum(n for k, n in ledger.failures().items() if not k.startswith("http 503")),
        "health during overload": prober.summary(began, ended),
        "health otherwise": prober.summary(0, began) + " | " + prober.summary(ended, done),
        "last shed request s after the overload ended": recovered_s(ledger, ended),
        **{k: result[k] for k in ("payments_created_acknowledged", "lost_payments", "duplicated_payments",
                                  "settle_s", "jobs_failed", "webhooks_unprocessed")},
    }
    body = "\n".join([
        f"1 `paymentd serve` (PAYMENTD_MAX_IN_FLIGHT 64, the default), 1 `paymentd worker`, the simulator at "
        f"100 ms median. Load: {rate} payments/s (create + confirm) for {warmup} s, then {rate * factor}/s for "
        f"{overload_s} s, then {rate}/s again; no client retries (each shed request counted once).",
        "",
        outcome_table(ledger, windows),
        "",
        *checks_table(summary),
    ])
    return summary, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=12.0)
    parser.add_argument("--factor", type=float, default=2.0)
    parser.add_argument("--overload-s", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--out", help="result file; '-' prints only")
    args = parser.parse_args()
    _, body = drill(rate=args.rate, factor=args.factor, overload_s=args.overload_s, warmup=args.warmup)
    write_result("drill-overload", "Drill: twice the sustainable load for a minute",
                 shlex.join([".venv/bin/python", "bench/drills/overload.py", *sys.argv[1:]]), body, args.out)


if __name__ == "__main__":
    main()
