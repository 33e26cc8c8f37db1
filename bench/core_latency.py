"""paymentd's own latency overhead: create + confirm through paymentd vs. straight to the simulator.

One run starts everything itself: the Stripe simulator (`python -m stripe_sim`, zero injected
latency), a fresh PostgreSQL database on the local server, and `paymentd serve` as a real process
in sandbox mode against that simulator. Then, from several load-generator processes (asyncio +
aiohttp, about a fifth of httpx's CPU per request; the 50 connections are split between
processes), 50 concurrent clients loop create -> confirm:

  direct    POST /v1/payment_intents, then POST /v1/payment_intents/{id}/confirm on the
            simulator, with the same form parameters paymentd's Stripe adapter sends;
  paymentd  POST /api/payments/create, then POST /api/payments/confirm (pm_card_visa).

Each phase has a warm-up (discarded) and a measured window. The report gives median and p99 of
each call for both targets and the difference, paymentd's own overhead, plus CPU time used by
every party, and is written as Markdown (default bench/results/core-latency-<UTC date>.md).

Run on demand, never part of the test suite:

    .venv/bin/python bench/core_latency.py
    .venv/bin/python bench/core_latency.py --clients 50 --processes 5 --duration 20 --warmup 3
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import multiprocessing as mp
import os
import platform
import random
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("PAYMENTD_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SIM_KEY = "sk_test_paymentd_bench"
TARGET_P99_OVERHEAD_MS = 25.0


# --------------------------------------------------------------------------- load generator


@dataclass
class Sample:
    op: str  # "create" | "confirm"
    started: float  # time.time() when the request was sent
    ms: float
    ok: bool


async def _post(client: aiohttp.ClientSession, path: str, **kwargs) -> tuple[int, dict]:
    async with client.post(path, **kwargs) as r:
        return r.status, await r.json()


async def _direct_pair(client: aiohttp.ClientSession) -> list[Sample]:
    """What paymentd's StripeProvider sends for create and confirm, as form posts."""
    samples = []
    create = {
        "amount": "2000",
        "currency": "usd",
        "payment_method_types[0]": "card",
        "capture_method": "automatic",
        "metadata[paymentd_payment_id]": str(uuid.uuid4()),
        "expand[0]": "latest_charge",
    }
    started, t0 = time.time(), time.perf_counter()
    status, body = await _post(client, "/v1/payment_intents", data=create, headers={"Idempotency-Key": uuid.uuid4().hex})
    ok = status == 200 and body.get("status") == "requires_payment_method"
    samples.append(Sample("create", started, (time.perf_counter() - t0) * 1000, ok))
    if not ok:
        return samples
    started, t0 = time.time(), time.perf_counter()
    status, body = await _post(
        client,
        f"/v1/payment_intents/{body['id']}/confirm",
        data={"payment_method": "pm_card_visa", "expand[0]": "latest_charge"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    # 202 `processing` is a valid answer too (the budget ran out before Stripe's did):
    # its latency counts, bounded by the budget, which is exactly what the client sees.
    ok = (status, body.get("status")) in ((200, "succeeded"), (202, "processing"))
    samples.append(Sample("confirm", started, (time.perf_counter() - t0) * 1000, ok))
    return samples


async def _paymentd_pair(client: aiohttp.ClientSession, user_id: str) -> list[Sample]:
    samples = []
    started, t0 = time.time(), time.perf_counter()
    status, body = await _post(client, "/api/payments/create", json={"user_id": user_id, "amount": "20.00"})
    ok = status == 201
    samples.append(Sample("create", started, (time.perf_counter() - t0) * 1000, ok))
    if not ok:
        return samples
    started, t0 = time.time(), time.perf_counter()
    status, body = await _post(
        client, "/api/payments/confirm", json={"payment_id": body["id"], "payment_method": "pm_card_visa"}
    )
    # 202 `processing` is a valid answer too (the budget ran out before Stripe's did):
    # its latency counts, bounded by the budget, which is exactly what the client sees.
    ok = (status, body.get("status")) in ((200, "succeeded"), (202, "processing"))
    samples.append(Sample("confirm", started, (time.perf_counter() - t0) * 1000, ok))
    return samples


async def _drive(
    target: str, base_url: str, headers: dict, user_id: str, connections: int, stop_at: float, interval: float | None
):
    """Each client loops pairs back to back, or, paced, starts one every `interval` seconds.

    Paced clients keep a fixed schedule: a pair that starts late (the previous one ran
    over) counts its lateness in the create's latency, so a slow server cannot hide
    behind clients that politely waited (coordinated omission)."""
    samples: list[Sample] = []
    async with aiohttp.ClientSession(
        base_url, headers=headers, connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as client:

        async def one_client() -> None:
            due = time.time() + (random.uniform(0, interval) if interval else 0)
            while due < stop_at:
                if interval:
                    await asyncio.sleep(max(0.0, due - time.time()))
                late_ms = max(0.0, time.time() - due) * 1000 if interval else 0.0
                started = time.time()
                try:
                    if target == "direct":
                        pair = await _direct_pair(client)
                    else:
                        pair = await _paymentd_pair(client, user_id)
                    pair[0].started, pair[0].ms = started - late_ms / 1000, pair[0].ms + late_ms
                    samples.extend(pair)
                except (aiohttp.ClientError, TimeoutError):  # a dropped connection counts as a failed request
                    samples.append(Sample("transport", started, 0.0, False))
                    await asyncio.sleep(0.05)
                due = due + interval if interval else time.time()

        await asyncio.gather(*(one_client() for _ in range(connections)))
    return samples


def _generator_process(target, base_url, headers, user_id, connections, interval, ready, go, stop_in, out) -> None:  # type: ignore[no-untyped-def]
    ready.put(os.getpid())
    go.wait()
    cpu0 = time.process_time()
    samples = asyncio.run(_drive(target, base_url, headers, user_id, connections, time.time() + stop_in, interval))
    out.put(([(s.op, s.started, s.ms, s.ok) for s in samples], time.process_time() - cpu0))


# --------------------------------------------------------------------------- orchestration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, expect: int | None = 200) -> None:
    """Until `url` answers `expect` (any status when None)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if expect is None or r.status_code == expect:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def stop(children: list[subprocess.Popen]) -> None:
    """The processes a run started, newest first: politely, then not."""
    for child in reversed(children):
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def cli(env: dict, *args: str) -> str:
    done = subprocess.run([str(VENV_BIN / "paymentd"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"paymentd {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


def postgres_processes() -> list[psutil.Process]:
    """Every PostgreSQL process, re-listed each time: backends start when paymentd opens connections."""
    return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]


def cpu_by_pid(procs: list[psutil.Process]) -> dict[int, float]:
    found = {}
    for p in procs:
        try:
            t = p.cpu_times()
            found[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # A process born inside the window counts from zero; one that died in it is lost (rare here).
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


@dataclass
class Phase:
    target: str
    samples: list[tuple[str, float, float, bool]] = field(default_factory=list)
    generator_cpu: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)
    measured_s: float = 0.0

    def latencies(self, op: str) -> list[float]:
        return sorted(ms for o, _, ms, ok in self.samples if o == op and ok)

    def errors(self) -> int:
        return sum(1 for *_, ok in self.samples if not ok)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    rank = max(1, round(p / 100 * len(values) + 0.5 - 1e-9))
    return values[min(rank, len(values)) - 1]


def run_phase(
    target: str, base_url: str, headers: dict, user_ids: list[str], args, watched: dict[str, Callable[[], list[psutil.Process]]],
    rate: float | None,
) -> Phase:
    """One target under one load: closed loop (`rate` None) or `rate` pairs/s offered in all."""
    interval = args.clients / rate if rate else None
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [args.clients // args.processes + (1 if i < args.clients % args.processes else 0) for i in range(args.processes)]
    procs = [
        ctx.Process(
            target=_generator_process,
            args=(target, base_url, headers, user_ids[i], n, interval, ready, go, args.warmup + args.duration, out),
            daemon=True,
        )
        for i, n in enumerate(shares)
        if n
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    start = time.time()
    go.set()
    time.sleep(args.warmup)
    cpu_before = {name: cpu_by_pid(list_procs()) for name, list_procs in watched.items()}
    measure_from = time.time()
    time.sleep(args.duration)
    cpu_after = {name: cpu_by_pid(list_procs()) for name, list_procs in watched.items()}
    measure_to = time.time()
    phase = Phase(target, measured_s=measure_to - measure_from)
    for _ in procs:
        samples, cpu = out.get(timeout=args.duration + 120)
        # Requests started in the warm-up are discarded; so are the ones after the window.
        phase.samples.extend(s for s in samples if measure_from <= s[1] < measure_to)
        phase.generator_cpu += cpu * args.duration / (time.time() - start)  # pro rata, approximate
    for p in procs:
        p.join(timeout=30)
    phase.server_cpu = {name: cpu_delta(cpu_before[name], cpu_after[name]) for name in watched}
    return phase


def machine() -> dict[str, str]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout.rstrip()
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip(),
        "cpu": model,
        "free": free,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


@dataclass
class Load:
    """Both targets measured under the same load."""

    rate: float | None  # pairs/s offered in all; None: closed loop
    direct: Phase
    through: Phase

    @property
    def label(self) -> str:
        return f"{self.rate:g} pairs/s offered" if self.rate else "closed loop (back to back)"

    def overhead(self, op: str, p: float | None) -> float:
        a, b = self.through.latencies(op), self.direct.latencies(op)
        if p is None:
            return statistics.median(a) - statistics.median(b)
        return pct(a, p) - pct(b, p)

    def worst_p99(self) -> float:
        return max(self.overhead("create", 99), self.overhead("confirm", 99))


@dataclass
class Webhooks:
    """A webhook endpoint at the simulator for paymentd, registered as an operator would at
    Stripe, its secret given to paymentd: the PaymentIntent events paymentd applies (the
    bench makes no refunds or disputes)."""

    sim_url: str
    endpoint_id: str
    secret: str

    @classmethod
    def register(cls, sim_url: str, url: str) -> Webhooks:
        from paymentd.jobs.reconciler import PAYMENT_EVENT_TYPES

        types = [t for t in PAYMENT_EVENT_TYPES if t.startswith("payment_intent.")]
        form = [("url", url), *((f"enabled_events[{i}]", t) for i, t in enumerate(types))]
        r = httpx.post(f"{sim_url}/v1/webhook_endpoints", content=urlencode(form),
                       headers={"Authorization": f"Bearer {SIM_KEY}", "Content-Type": "application/x-www-form-urlencoded"})
        r.raise_for_status()
        return cls(sim_url, r.json()["id"], r.json()["secret"])

    def enable(self, on: bool) -> None:
        httpx.post(f"{self.sim_url}/v1/webhook_endpoints/{self.endpoint_id}", data={"disabled": str(not on).lower()},
                   headers={"Authorization": f"Bearer {SIM_KEY}"}).raise_for_status()


def commit_of(path: Path) -> str:
    found = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return found.stdout.strip() or "an unknown commit"


def report(loads: list[Load], args, command: str, info: dict[str, str], notes: list[str]) -> str:
    def row(name: str, ph: Phase) -> str:
        c, f = ph.latencies("create"), ph.latencies("confirm")
        rate = len(f) / ph.measured_s if ph.measured_s else 0
        return (
            f"| {name} | {statistics.median(c):.1f} | {pct(c, 99):.1f} | {statistics.median(f):.1f} | "
            f"{pct(f, 99):.1f} | {len(c)} / {len(f)} | {rate:.0f} | {ph.errors()} |"
        )

    def verdict(load: Load) -> str:
        return "MET" if load.worst_p99() < TARGET_P99_OVERHEAD_MS else "MISSED"

    lines = [
        f"# paymentd core latency: overhead over the simulator ({dt.datetime.now(dt.UTC):%Y-%m-%d})",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Command: `{command}`",
        f"- paymentd from: {args.src or ROOT / 'src'} at {commit_of(args.src or ROOT)}",
        f"- Load: {args.clients} concurrent clients (keep-alive connections) in {args.processes} generator processes, "
        "each client running create -> confirm pairs, either back to back (closed loop) or paced so that all "
        "clients together offer a fixed rate (a paced pair that starts late counts its lateness in the create's "
        f"latency); warm-up {args.warmup:g} s discarded, measured window {args.duration:g} s per target and load; "
        f"simulator at zero injected latency; paymentd `serve --workers {args.workers}` with its job worker "
        + ("as a separate `paymentd worker` process" if args.worker == "process" else "inside the API process")
        + "; Stripe's events reach paymentd "
        + ("as the simulator's signed webhooks" if args.events == "webhooks" else "only by the reconciler's sweep")
        + f"; log level "
        f"{args.log_level}, outbound limit `PAYMENTD_STRIPE_RPS={args.stripe_rps}` "
        "(the limiter runs, but does not throttle: the simulator has no limit here); reconciler every "
        f"{args.reconcile_interval or 30} s.",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']}",
        "",
        "```",
        "$ free -h",
        info["free"],
        "```",
        "",
        f"## Summary: paymentd's p99 overhead (target for this stage: under {TARGET_P99_OVERHEAD_MS:g} ms)",
        "",
        "| load | pairs/s done (direct / paymentd) | create p99 overhead | confirm p99 overhead | verdict |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for load in loads:
        done = [len(ph.latencies("confirm")) / ph.measured_s for ph in (load.direct, load.through)]
        lines.append(
            f"| {load.label} | {done[0]:.0f} / {done[1]:.0f} | {load.overhead('create', 99):.1f} | "
            f"{load.overhead('confirm', 99):.1f} | **{verdict(load)}** |"
        )
    for load in loads:
        lines += [
            "",
            f"## {load.label}: latency (ms, measured at the client)",
            "",
            "| target | create median | create p99 | confirm median | confirm p99 | samples (create / confirm) | pairs/s | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            row("stripe_sim direct", load.direct),
            row("through paymentd", load.through),
            f"| **paymentd overhead** | **{load.overhead('create', None):.1f}** | **{load.overhead('create', 99):.1f}** | "
            f"**{load.overhead('confirm', None):.1f}** | **{load.overhead('confirm', 99):.1f}** | | | |",
            "",
            "CPU used during the measured window (cores busy, i.e. CPU-seconds per second):",
            "",
            "| phase | stripe_sim | paymentd (API + worker) | postgres (all backends) | load generators |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {ph.target} | {ph.server_cpu.get('stripe_sim', 0) / ph.measured_s:.2f} | "
                f"{ph.server_cpu.get('paymentd', 0) / ph.measured_s:.2f} | "
                f"{ph.server_cpu.get('postgres', 0) / ph.measured_s:.2f} | {ph.generator_cpu / ph.measured_s:.2f} |"
                for ph in (load.direct, load.through)
            ),
        ]
    lines.append("")
    if notes:
        lines += ["## Notes from the run", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--processes", type=int, default=5, help="load-generator processes sharing the clients")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per target")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds before each window")
    parser.add_argument("--rate", type=float, nargs="+", default=[0],
                        help="pace the clients: pairs/s offered in all, one run per value; 0 (the default) is "
                             "closed loop, every client back to back")
    parser.add_argument("--workers", type=int, default=1, help="paymentd serve --workers")
    parser.add_argument("--reconcile-interval", type=int, default=None,
                        help="paymentd's PAYMENTD_RECONCILE_INTERVAL_S (default: paymentd's own, 30 s)")
    parser.add_argument("--stripe-rps", type=int, default=100_000,
                        help="paymentd's PAYMENTD_STRIPE_RPS: high by default, so the outbound limiter is passed "
                             "through but never throttles (at 100/s it would cap paymentd at ~45 pairs/s and "
                             "this would measure the limiter's queue, not paymentd's overhead)")
    parser.add_argument("--events", choices=["webhooks", "sweep"], default="webhooks",
                        help="how paymentd hears of Stripe's events: the simulator's signed webhooks (as in "
                             "production; the default), or only the reconciler's catch-up sweep every 30 s "
                             "(what runs before 2026-11-26 17:30 UTC measured)")
    parser.add_argument("--worker", choices=["process", "inline"], default="process",
                        help="the job worker as its own `paymentd worker` process (DESIGN.md's production "
                             "shape; the default) or inside the API process (`serve`'s embedded default)")
    parser.add_argument("--log-level", default="INFO", help="paymentd's PAYMENTD_LOG_LEVEL (default INFO, as shipped)")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report path ('-' for stdout only)")
    parser.add_argument("--keep", action="store_true", help="leave the database behind for inspection")
    parser.add_argument("--src", type=Path, default=None,
                        help="run paymentd from another checkout's src/ (through PYTHONPATH, with this virtualenv): "
                             "runs alternating with and without it compare two versions on the same machine state")
    args = parser.parse_args()
    command = "python bench/core_latency.py " + shlex.join(sys.argv[1:])
    out = args.out or ROOT / "bench" / "results" / f"core-latency-{dt.datetime.now(dt.UTC):%Y-%m-%d}.md"

    workdir = Path(tempfile.mkdtemp(prefix="paymentd-bench-"))
    db_name = f"paymentd_bench_{uuid.uuid4().hex[:10]}"
    children: list[subprocess.Popen] = []
    try:
        sim_port, api_port = free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        sim = subprocess.Popen(
            [sys.executable, "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--log-level", "warning"],
            stdout=open(workdir / "sim.log", "wb"), stderr=subprocess.STDOUT,
        )
        children.append(sim)
        wait_http(f"{sim_url}/v1/payment_intents", expect=None)  # up once it answers at all

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{db_name}"
        api_url = f"http://127.0.0.1:{api_port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "PAYMENTD_", "DATABASE_URL"))}
        env |= {"DATABASE_URL": database_url, "STRIPE_API_BASE": sim_url, "PAYMENTD_LOG_LEVEL": args.log_level,
                "PAYMENTD_STRIPE_RPS": str(args.stripe_rps),
                "PAYMENTD_RUN_WORKER": "true" if args.worker == "inline" else "false"}
        if args.src is not None:
            env["PYTHONPATH"] = str(args.src.resolve())
        if args.reconcile_interval is not None:
            env["PAYMENTD_RECONCILE_INTERVAL_S"] = str(args.reconcile_interval)
        hooks = Webhooks.register(sim_url, f"{api_url}/api/webhooks/stripe") if args.events == "webhooks" else None
        if hooks:
            env["STRIPE_WEBHOOK_SECRET"] = hooks.secret
        cli(env, "account", "create", "bench")  # also migrates
        key = cli(env, "apikey", "create", "--account", "bench", "--scope", "admin")

        api = subprocess.Popen(
            [str(VENV_BIN / "paymentd"), "serve", "--host", "127.0.0.1", "--port", str(api_port),
             "--workers", str(args.workers)],
            env=env, stdout=open(workdir / "paymentd.log", "wb"), stderr=subprocess.STDOUT,
        )
        children.append(api)
        if args.worker == "process":
            children.append(subprocess.Popen([str(VENV_BIN / "paymentd"), "worker"], env=env,
                                             stdout=open(workdir / "worker.log", "wb"), stderr=subprocess.STDOUT))
        wait_http(f"{api_url}/readyz")
        auth = {"Authorization": f"Bearer {key}"}
        user_ids = []
        for i in range(args.processes):
            r = httpx.post(f"{api_url}/api/users", json={"email": f"bench{i}@example.com", "name": f"Bench {i}"},
                           headers=auth, timeout=30)
            r.raise_for_status()
            user_ids.append(r.json()["id"])

        def tree(pid: int) -> Callable[[], list[psutil.Process]]:
            return lambda: [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]

        paymentd_pids = [child.pid for child in children[1:]]  # the API and, if separate, its worker
        watched = {"stripe_sim": tree(sim.pid), "paymentd": lambda: [p for pid in paymentd_pids for p in tree(pid)()],
                   "postgres": postgres_processes}
        print(f"stripe_sim pid {sim.pid} {sim_url}, paymentd pid {api.pid} {api_url}, database {db_name}; logs in {workdir}", file=sys.stderr)

        loads = []
        for rate in args.rate:
            if hooks:
                hooks.enable(False)  # intents made straight at the simulator are not paymentd's to hear about
            direct = run_phase("direct", sim_url, {"Authorization": f"Bearer {SIM_KEY}"}, user_ids, args, watched, rate)
            if hooks:
                hooks.enable(True)
            through = run_phase("paymentd", api_url, auth, user_ids, args, watched, rate)
            loads.append(Load(rate or None, direct, through))
            print(f"{loads[-1].label}: direct {len(direct.samples)} samples, {direct.errors()} errors; "
                  f"paymentd {len(through.samples)} samples, {through.errors()} errors", file=sys.stderr)

        notes = [
            f"{load.label}, {ph.target}: {ph.errors()} failed requests, excluded from the latencies."
            for load in loads for ph in (load.direct, load.through) if ph.errors()
        ]
        text = report(loads, args, command, machine(), notes)
        print(text)
        if str(out) != "-":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            print(f"written to {out}", file=sys.stderr)
    finally:
        stop(children)
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
