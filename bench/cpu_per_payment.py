"""paymentd's CPU per payment: this checkout against baseline checkouts, side by side.

CPU time on a shared two-core machine swings by a third between identical runs, and
latency under load hides where the time goes; CPU seconds of the paymentd process per
payment, one client at a time, is the steadier measure of paymentd's own cost. Each
round starts, for every variant, the simulator (zero latency) and `paymentd serve` on
a fresh database, warms each up, then runs N payments per variant, one after the
other and interleaved (one payment to each variant in turn: whatever else the machine
is doing falls on every variant alike), and reads the CPU each paymentd process used:

  pair      POST /api/payments/create, then /confirm (pm_card_visa)
  seed      the same with an Idempotency-Key on each POST, then GET the payment
            (the seed scenario's transaction)

With --events the job worker runs too (inside the API process), and the measure lasts
until every payment's Stripe events are applied: the whole cost of a payment,
background included. `--events sweep`: the simulator delivers no webhooks, and the
reconciler's catch-up sweep applies them; `--events webhooks`: a webhook endpoint is
registered at the simulator (the PaymentIntent events paymentd applies) and each event
is delivered as it happens. PostgreSQL's CPU (the backends of the variant's own
database) and that database's counters (pg_stat_database) are reported beside paymentd's.

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
    ADMIN_URL, ROOT, VENV_BIN, Webhooks, cli, commit_of, cpu_by_pid, cpu_delta, free_port, machine,
    stop,
    wait_http,
)


def _payments(client: httpx.Client, user_id: str, flow: str, count: int) -> None:
    for _ in range(count):
        # Prefer: wait: a loaded machine must not turn the 400 ms response budget's
        # "processing" answers into failed runs; the work done is the same.
        keyed = {"Idempotency-Key": uuid.uuid4().hex} if flow == "seed" else {}
        created = client.post("/api/payments/create", json={"user_id": user_id, "amount": "20.00"},
                              headers={**keyed, "Prefer": "wait=10"})
        assert created.status_code == 201, created.text
        payment_id = created.json()["id"]
        keyed = {"Idempotency-Key": uuid.uuid4().hex} if flow == "seed" else {}
        confirmed = client.post("/api/payments/confirm", json={"payment_id": payment_id, "payment_method": "pm_card_visa"},
                                headers={**keyed, "Prefer": "wait=10"})
        assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
        if flow == "seed":
            assert client.get(f"/api/payments/{payment_id}").status_code == 200


def _cpu(pid: int) -> float:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def _backends(db_name: str) -> list[psutil.Process]:
    """The PostgreSQL backends serving this database only: the machine's server is shared,
    and other databases' work (other people's tests) is not this variant's cost. Shared
    background work (WAL writer, checkpointer) is left out for the same reason."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (db_name,))]
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return found


_COUNTERS = ("xact_commit", "tup_inserted", "tup_updated", "blks_hit")


def _db_counters(database_url: str) -> dict[str, float]:
    """This database's own activity counters (pg_stat_database): what the work asked of
    PostgreSQL, independent of how busy the machine is."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(f"SELECT {', '.join(_COUNTERS)} FROM pg_stat_database WHERE datname = current_database()"
                           ).fetchone()
    return dict(zip(_COUNTERS, (float(v) for v in row), strict=True))


def _events_done(database_url: str) -> bool:
    """Every stored event applied, and every payment's `succeeded` among them."""
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM webhook_events WHERE processed_at IS NULL) AND"
            " (SELECT count(*) FROM webhook_events WHERE type = 'payment_intent.succeeded')"
            " >= (SELECT count(*) FROM payments)").fetchone()[0]


class Variant:
    """One version of paymentd, running: its own simulator, database and `paymentd serve`."""

    def __init__(self, src: Path | None, args: argparse.Namespace, settings: dict[str, str]) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="paymentd-cpu-"))
        self.db_name = f"paymentd_cpu_{uuid.uuid4().hex[:10]}"
        self.database_url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.db_name}"
        self.children: list[subprocess.Popen] = []
        self.args = args
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("STRIPE_", "PAYMENTD_", "DATABASE_URL", "PYTHONPATH"))}
        # This checkout's own src/ too: the virtualenv's editable install may point at another checkout.
        env["PYTHONPATH"] = str(src if src is not None else ROOT / "src")
        self.env = env | settings  # e.g. PAYMENTD_FRAUD_RULES_ENABLED=false for a rules-off variant

    def start(self) -> None:
        env, args = self.env, self.args
        sim_port, api_port = free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        self.children.append(subprocess.Popen(
            [sys.executable, "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--log-level", "warning"],
            env=env, stdout=open(self.workdir / "sim.log", "wb"), stderr=subprocess.STDOUT,
        ))
        wait_http(f"{sim_url}/v1/payment_intents", expect=None)
        api_url = f"http://127.0.0.1:{api_port}"
        if args.events == "webhooks":
            env["STRIPE_WEBHOOK_SECRET"] = Webhooks.register(sim_url, f"{api_url}/api/webhooks/stripe").secret
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        env |= {"DATABASE_URL": self.database_url, "STRIPE_API_BASE": sim_url, "PAYMENTD_STRIPE_RPS": "100000",
                "PAYMENTD_RUN_WORKER": "true" if args.events else "false", "PAYMENTD_RECONCILE_INTERVAL_S": "5"}
        cli(env, "account", "create", "bench")
        key = cli(env, "apikey", "create", "--account", "bench", "--scope", "admin")
        self.api = subprocess.Popen(
            [str(VENV_BIN / "paymentd"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
            env=env, stdout=open(self.workdir / "paymentd.log", "wb"), stderr=subprocess.STDOUT,
        )
        self.children.append(self.api)
        wait_http(f"{api_url}/readyz")
        self.client = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        user = self.client.post("/api/users", json={"email": "cpu@example.com", "name": "Cpu"})
        user.raise_for_status()
        self.user_id = user.json()["id"]

    def pay(self, count: int) -> None:
        _payments(self.client, self.user_id, self.args.flow, count)

    def settle(self) -> None:
        if self.args.events:
            _wait_for_events(self.database_url)

    def begin(self) -> None:
        self.counters = _db_counters(self.database_url)
        self.cpu, self.pg = _cpu(self.api.pid), cpu_by_pid(_backends(self.db_name))

    def end(self) -> tuple[float, float, dict[str, float]]:
        """CPU milliseconds per payment of the paymentd process and of this database's
        PostgreSQL backends, and this database's counters per payment."""
        count = self.args.payments
        cpu = (_cpu(self.api.pid) - self.cpu) / count * 1000
        pg = cpu_delta(self.pg, cpu_by_pid(_backends(self.db_name))) / count * 1000
        time.sleep(1.5)  # backends report their counters when idle, at most once a second
        counters = {name: (value - self.counters[name]) / count
                    for name, value in _db_counters(self.database_url).items()}
        return cpu, pg, counters

    def stop(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        stop(self.children)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


Source = tuple[Path | None, dict[str, str]]  # a checkout's src/ and settings for its processes


def measure(sources: list[Source], args: argparse.Namespace) -> list[tuple[float, float, dict[str, float]]]:
    """One round: every variant started side by side, then their payments interleaved (one
    payment to each in turn), so that the machine's other load falls on all of them alike;
    each one's CPU is read over the same stretch of time."""
    variants = [Variant(src, args, settings) for src, settings in sources]
    try:
        for variant in variants:
            variant.start()
        for variant in variants:
            variant.pay(args.warmup)
        for variant in variants:  # the warm-up's events out of the way first
            variant.settle()
        for variant in variants:
            variant.begin()
        for _ in range(args.payments):
            for variant in variants:
                variant.pay(1)
        for variant in variants:
            variant.settle()
        return [variant.end() for variant in variants]
    finally:
        for variant in variants:
            variant.stop()


def _wait_for_events(database_url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not _events_done(database_url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the payments' events were not all applied within {timeout_s:.0f} s")
        time.sleep(0.5)


Result = tuple[float, float, dict[str, float]]  # paymentd ms, PostgreSQL ms, counters per payment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", type=Path, action="append", default=[],
                        help="another checkout's src/ to compare against (repeatable: several baselines)")
    parser.add_argument("--baseline-env", action="append", default=[], metavar="NAME=VALUE",
                        help="this checkout with one setting changed as a baseline (repeatable: one variant each),"
                             " e.g. PAYMENTD_FRAUD_RULES_ENABLED=false")
    parser.add_argument("--flow", choices=("pair", "seed"), default="pair")
    parser.add_argument("--events", choices=("sweep", "webhooks"), default=None,
                        help="run the worker and count applying the events too (found by the sweep, or delivered)")
    parser.add_argument("--payments", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="rounds, every variant side by side in each")
    parser.add_argument("--out", type=Path, default=None, help="Markdown report path ('-' for stdout only)")
    args = parser.parse_args()
    command = "python bench/cpu_per_payment.py " + shlex.join(sys.argv[1:])
    variants: dict[str, Source] = {
        f"baseline ({src} at {commit_of(src)})": (src.resolve(), {}) for src in args.baseline_src}
    for setting in args.baseline_env:
        name, sep, value = setting.partition("=")
        if not sep or not name:
            parser.error(f"--baseline-env wants NAME=VALUE, not {setting!r}")
        variants[f"baseline (this checkout, {setting})"] = (ROOT / "src", {name: value})
    # This checkout's own src/ through PYTHONPATH too: the virtualenv's editable install may
    # point at another checkout (a git worktree shares the main checkout's .venv).
    variants["this checkout"] = (ROOT / "src", {})
    results: dict[str, list[Result]] = {name: [] for name in variants}
    load_before = os.getloadavg()
    out = args.out or ROOT / "bench" / "results" / f"cpu-per-payment-{dt.datetime.now(dt.UTC):%Y-%m-%d}.md"
    text = ""
    for _ in range(args.rounds):
        for name, result in zip(variants, measure(list(variants.values()), args), strict=True):
            results[name].append(result)
            cpu, pg, counters = result
            print(f"{name}: paymentd {cpu:.2f} ms, postgres {pg:.2f} ms, "
                  + ", ".join(f"{k} {v:.2f}" for k, v in counters.items()), file=sys.stderr)
        # Written after every round: a run stopped early keeps the rounds it completed.
        text = report(args, command, results, load_before, os.getloadavg())
        if str(out) != "-":
            out.write_text(text)
    print(text)
    if str(out) != "-":
        print(f"written to {out}", file=sys.stderr)


def report(args: argparse.Namespace, command: str, results: dict[str, list[Result]],
           load_before: tuple[float, ...], load_now: tuple[float, ...]) -> str:
    info = machine()
    commit = commit_of(ROOT)
    done = len(next(iter(results.values())))

    def cells(values: list[float]) -> str:
        return (f"{' / '.join(f'{v:.2f}' for v in values)} | **{statistics.median(values):.2f}** "
                f"| {min(values):.2f}")

    rows = [f"| {name} | {cells([v[0] for v in values])} | {cells([v[1] for v in values])} |"
            for name, values in results.items()]
    counter_rows = [
        f"| {name} | " + " | ".join(f"{statistics.median(v[2][c] for v in values):.1f}" for c in _COUNTERS) + " |"
        for name, values in results.items()]
    names = list(results)
    ours = results[names[-1]]

    def ratios(base: list[Result], which: int) -> str:
        each = [100 * (mine[which] / theirs[which] - 1) for mine, theirs in zip(ours, base, strict=True)]
        return f"{' / '.join(f'{r:+.0f}%' for r in each)} | **{statistics.median(each):+.0f}%**"

    paired = [f"| {name} | {ratios(results[name], 0)} | {ratios(results[name], 1)} |" for name in names[:-1]]
    return "\n".join([
        f"# paymentd CPU per payment ({dt.datetime.now(dt.UTC):%Y-%m-%d})",
        "",
        f"- Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; this checkout at {commit}",
        f"- Command: `{command}`",
        f"- Rounds completed: {done} of {args.rounds}",
        f"- Flow: {args.flow} ({'create + confirm' if args.flow == 'pair' else 'keyed create + keyed confirm + GET'}), "
        f"{args.payments} payments per variant one at a time after {args.warmup} of warm-up, the variants side by "
        "side with their payments interleaved; "
        + (f"job worker on, measured until every payment's events were applied (events: {args.events})"
           if args.events else "job worker off (request path only)"),
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}, Python {info['python']}; "
        f"load average {load_before[0]:.1f} at the start, {load_now[0]:.1f} at the end (the machine is shared)",
        "- PostgreSQL CPU: the backends connected to the variant's own database (not the server's other "
        "databases, nor its shared WAL writer and checkpointer)",
        "",
        "| variant | paymentd CPU ms per payment, each round | median | least (noise only adds) "
        "| PostgreSQL CPU ms per payment, each round | median | least |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "This checkout against each baseline, round by round (the same round ran them side by side):",
        "",
        "| against | paymentd, each round | median | PostgreSQL, each round | median |",
        "| --- | ---: | ---: | ---: | ---: |",
        *paired,
        "",
        "The variant's database counters per payment (pg_stat_database, median of the rounds; they count "
        "what the work asked of PostgreSQL, not how busy the machine was, but time-driven work such as the "
        "reconciler's sweep every 5 s adds more per payment in a slower run):",
        "",
        "| variant | " + " | ".join(_COUNTERS) + " |",
        "| --- |" + " ---: |" * len(_COUNTERS),
        *counter_rows,
        "",
    ])


if __name__ == "__main__":
    main()
