"""paymentd's CPU per payment: this checkout against a baseline checkout, alternating.

CPU time on a shared two-core machine swings by a third between identical runs, and
latency under load hides where the time goes; CPU seconds of the paymentd process per
payment, one client at a time, is the steadier measure of paymentd's own cost. Each
round starts the simulator (zero latency) and `paymentd serve` on a fresh database for
each variant, warms up, then runs N payments one after the other and reads the CPU
the paymentd process used:

  pair      POST /api/payments/create, then /confirm (pm_card_visa)
  seed      the same with an Idempotency-Key on each POST, then GET the payment
            (the seed scenario's transaction)

With --events the job worker runs too (inside the API process), and the measure lasts
until every payment's Stripe events are applied: the whole cost of a payment,
background included. `--events sweep`: the simulator delivers no webhooks, and the
reconciler's catch-up sweep applies them; `--events webhooks`: a webhook endpoint is
registered at the simulator (the PaymentIntent events paymentd applies) and each event
is delivered as it happens. PostgreSQL's CPU (all backends) is reported beside paymentd's.

The baseline is another checkout's `src/` (e.g. `git worktree add /tmp/base <commit>`),
run through PYTHONPATH with this virtualenv:

    .venv/bin/python bench/cpu_per_payment.py --baseline-src /tmp/base/src
    .venv/bin/python bench/cpu_per_payment.py --flow seed --events sweep --payments 500 --rounds 2
    .venv/bin/python bench/cpu_per_payment.py --events webhooks --baseline-src /tmp/base/src
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_latency import (  # noqa: E402
    ADMIN_URL, ROOT, VENV_BIN, Webhooks, cli, commit_of, cpu_by_pid, cpu_delta, free_port, machine, postgres_processes,
    stop,
    wait_http,
)


def _payments(api_url: str, key: str, user_id: str, flow: str, count: int) -> None:
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        for _ in range(count):
            keyed = {"Idempotency-Key": uuid.uuid4().hex} if flow == "seed" else {}
            created = client.post("/api/payments/create", json={"user_id": user_id, "amount": "20.00"}, headers=keyed)
            assert created.status_code == 201, created.text
            payment_id = created.json()["id"]
            keyed = {"Idempotency-Key": uuid.uuid4().hex} if flow == "seed" else {}
            confirmed = client.post(
                "/api/payments/confirm", json={"payment_id": payment_id, "payment_method": "pm_card_visa"}, headers=keyed
            )
            assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
            if flow == "seed":
                assert client.get(f"/api/payments/{payment_id}").status_code == 200


def _cpu(pid: int) -> float:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def _events_done(database_url: str) -> bool:
    """Every stored event applied, and every payment's `succeeded` among them."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM webhook_events WHERE processed_at IS NULL) AND"
            " (SELECT count(*) FROM webhook_events WHERE type = 'payment_intent.succeeded')"
            " >= (SELECT count(*) FROM payments)").fetchone()[0]


def measure(src: Path | None, args: argparse.Namespace) -> tuple[float, float]:
    """CPU milliseconds per payment of the paymentd process and of PostgreSQL, for one variant."""
    workdir = Path(tempfile.mkdtemp(prefix="paymentd-cpu-"))
    db_name = f"paymentd_cpu_{uuid.uuid4().hex[:10]}"
    children: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "PAYMENTD_", "DATABASE_URL", "PYTHONPATH"))}
    # This checkout's own src/ too: the virtualenv's editable install may point at another checkout.
    env["PYTHONPATH"] = str(src if src is not None else ROOT / "src")
    try:
        sim_port, api_port = free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        children.append(subprocess.Popen(
            [sys.executable, "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--log-level", "warning"],
            env=env, stdout=open(workdir / "sim.log", "wb"), stderr=subprocess.STDOUT,
        ))
        wait_http(f"{sim_url}/v1/payment_intents", expect=None)
        api_port_url = f"http://127.0.0.1:{api_port}"
        if args.events == "webhooks":
            env["STRIPE_WEBHOOK_SECRET"] = Webhooks.register(sim_url, f"{api_port_url}/api/webhooks/stripe").secret
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
        env |= {"DATABASE_URL": database_url, "STRIPE_API_BASE": sim_url, "PAYMENTD_STRIPE_RPS": "100000",
                "PAYMENTD_RUN_WORKER": "true" if args.events else "false", "PAYMENTD_RECONCILE_INTERVAL_S": "5"}
        cli(env, "account", "create", "bench")
        key = cli(env, "apikey", "create", "--account", "bench", "--scope", "admin")
        api = subprocess.Popen(
            [str(VENV_BIN / "paymentd"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
            env=env, stdout=open(workdir / "paymentd.log", "wb"), stderr=subprocess.STDOUT,
        )
        children.append(api)
        api_url = api_port_url
        wait_http(f"{api_url}/readyz")
        user = httpx.post(f"{api_url}/api/users", json={"email": "cpu@example.com", "name": "Cpu"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
        user.raise_for_status()
        _payments(api_url, key, user.json()["id"], args.flow, args.warmup)
        if args.events:  # the warm-up's events out of the way first
            _wait_for_events(database_url)
        postgres = postgres_processes()
        before, pg_before = _cpu(api.pid), cpu_by_pid(postgres)
        _payments(api_url, key, user.json()["id"], args.flow, args.payments)
        if args.events:
            _wait_for_events(database_url)
        pg_cpu = cpu_delta(pg_before, cpu_by_pid(postgres))
        return (_cpu(api.pid) - before) / args.payments * 1000, pg_cpu / args.payments * 1000
    finally:
        stop(children)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _wait_for_events(database_url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not _events_done(database_url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the payments' events were not all applied within {timeout_s:.0f} s")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, action="append", default=[],
                        help="another checkout's src/ to compare against (repeatable: several baselines)")
    parser.add_argument("--flow", choices=("pair", "seed"), default="pair")
    parser.add_argument("--events", choices=("sweep", "webhooks"), default=None,
                        help="run the worker and count applying the events too (found by the sweep, or delivered)")
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every variant")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report path ('-' for stdout only)")
    args = parser.parse_args()
    command = "python bench/cpu_per_payment.py " + shlex.join(sys.argv[1:])
    variants: dict[str, Path | None] = {
        f"baseline ({src} at {commit_of(src)})": src.resolve() for src in args.baseline_src}
    variants["this checkout"] = None
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, src in variants.items():
            results[name].append(measure(src, args))
            print(f"{name}: paymentd {results[name][-1][0]:.2f} ms, postgres {results[name][-1][1]:.2f} ms",
                  file=sys.stderr)

    info = machine()
    commit = commit_of(ROOT)
    def cells(values: list[float]) -> str:
        return (f"{' / '.join(f'{v:.2f}' for v in values)} | **{statistics.median(values):.2f}** "
                f"| {min(values):.2f}")

    rows = [f"| {name} | {cells([v[0] for v in values])} | {cells([v[1] for v in values])} |"
            for name, values in results.items()]
    lines = [
        f"# paymentd CPU per payment ({dt.datetime.now(dt.UTC):%Y-%m-%d})",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; this checkout at {commit}",
        f"- Command: `{command}`",
        f"- Flow: {args.flow} ({'create + confirm' if args.flow == 'pair' else 'keyed create + keyed confirm + GET'}), "
        f"{args.payments} payments one at a time after {args.warmup} of warm-up; "
        + (f"job worker on, measured until every payment's events were applied (events: {args.events})"
           if args.events else "job worker off (request path only)"),
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']}",
        "",
        "| variant | paymentd CPU ms per payment, each round | median | least (noise only adds) "
        "| PostgreSQL CPU ms per payment, each round | median | least |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or ROOT / "bench" / "results" / f"cpu-per-payment-{dt.datetime.now(dt.UTC):%Y-%m-%d}.md"
    if str(out) != "-":
        out.write_text(text)
        print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
