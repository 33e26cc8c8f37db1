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

With --events the job worker runs too, and the measure lasts until the reconciler has
applied the payments' Stripe events (the simulator here delivers no webhooks, so the
catch-up sweep applies them): the whole cost of a payment, background included.

The baseline is another checkout's `src/` (e.g. `git worktree add /tmp/base <commit>`),
run through PYTHONPATH with this virtualenv:

    .venv/bin/python bench/cpu_per_payment.py --baseline-src /tmp/base/src
    .venv/bin/python bench/cpu_per_payment.py --flow seed --events --payments 500 --rounds 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
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

from core_latency import ADMIN_URL, ROOT, VENV_BIN, cli, free_port, machine, stop, wait_http  # noqa: E402


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


def _applied_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM webhook_events WHERE processed_at IS NOT NULL").fetchone()[0]


def measure(src: Path | None, args: argparse.Namespace) -> float:
    """CPU milliseconds of the paymentd process per payment, for one variant."""
    workdir = Path(tempfile.mkdtemp(prefix="paymentd-cpu-"))
    db_name = f"paymentd_cpu_{uuid.uuid4().hex[:10]}"
    children: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "PAYMENTD_", "DATABASE_URL", "PYTHONPATH"))}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    try:
        sim_port, api_port = free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        children.append(subprocess.Popen(
            [sys.executable, "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--log-level", "warning"],
            env=env, stdout=open(workdir / "sim.log", "wb"), stderr=subprocess.STDOUT,
        ))
        wait_http(f"{sim_url}/v1/payment_intents", expect=None)
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
        api_url = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api_url}/readyz")
        user = httpx.post(f"{api_url}/api/users", json={"email": "cpu@example.com", "name": "Cpu"},
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
        user.raise_for_status()
        _payments(api_url, key, user.json()["id"], args.flow, args.warmup)
        if args.events:  # the warm-up's events out of the way first
            deadline = time.monotonic() + 60
            while _applied_events(database_url) < args.warmup and time.monotonic() < deadline:
                time.sleep(0.5)
        before = _cpu(api.pid)
        _payments(api_url, key, user.json()["id"], args.flow, args.payments)
        if args.events:
            deadline = time.monotonic() + 120
            while _applied_events(database_url) < args.warmup + args.payments:
                if time.monotonic() > deadline:
                    raise RuntimeError("the reconciler did not apply every payment's event within 120 s")
                time.sleep(0.5)
        return (_cpu(api.pid) - before) / args.payments * 1000
    finally:
        stop(children)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _commit(path: Path) -> str:
    found = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "an unknown commit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, default=None, help="another checkout's src/ to compare against")
    parser.add_argument("--flow", choices=("pair", "seed"), default="pair")
    parser.add_argument("--events", action="store_true", help="run the worker and count applying the events too")
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of every variant")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report path ('-' for stdout only)")
    args = parser.parse_args()
    command = "python bench/cpu_per_payment.py " + shlex.join(sys.argv[1:])
    variants = {"this checkout": None} if args.baseline_src is None else {
        f"baseline ({args.baseline_src} at {_commit(args.baseline_src)})": args.baseline_src.resolve(),
        "this checkout": None}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, src in variants.items():
            results[name].append(measure(src, args))
            print(f"{name}: {results[name][-1]:.2f} ms", file=sys.stderr)

    info = machine()
    commit = _commit(ROOT)
    rows = [f"| {name} | {' / '.join(f'{v:.2f}' for v in values)} | **{min(values):.2f}** |"
            for name, values in results.items()]
    lines = [
        f"# paymentd CPU per payment ({dt.datetime.now(dt.UTC):%Y-%m-%d})",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; this checkout at {commit}",
        f"- Command: `{command}`",
        f"- Flow: {args.flow} ({'create + confirm' if args.flow == 'pair' else 'keyed create + keyed confirm + GET'}), "
        f"{args.payments} payments one at a time after {args.warmup} of warm-up; "
        + ("job worker on, measured until the reconciler applied every payment's event" if args.events
           else "job worker off (request path only)"),
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']}",
        "",
        "| variant | CPU ms per payment, each round | least (noise only adds) |",
        "| --- | ---: | ---: |",
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
