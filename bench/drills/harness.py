"""What every availability drill shares: real processes (the simulator, `paymentd serve`s and
workers, HAProxy, a drill-owned Redis or PostgreSQL), a paced load generator that counts every
request by outcome, and the check of the database against the simulator's own records.

The drills (bench/drills/*.py) and their short versions in tests/e2e/test_drills.py use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

from tests.support.cluster import base_env, duplicates_at_stripe, free_port  # noqa: E402

BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get("PAYMENTD_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_BIN = Path(os.environ.get("PAYMENTD_DRILL_PG_BIN", "/usr/lib/postgresql/15/bin"))
SIM_KEY = "sk_test_drills"
# Answers a careful client retries with the same Idempotency-Key (after Retry-After).
TRANSIENT = {409, 429, 502, 503, 504}


def wait_until(check, timeout: float, what: str, interval: float = 0.1) -> float:  # type: ignore[no-untyped-def]
    """Poll `check()` until truthy; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.HTTPError, OSError, psycopg.Error, ValueError, KeyError):
            if check():
                return time.monotonic() - started
        time.sleep(interval)
    raise TimeoutError(f"{what} did not happen within {timeout} s")


def status_of(url: str, timeout: float = 2.0) -> int:
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return 0


# ----------------------------------------------------------------- processes


@dataclass
class Proc:
    """One child process that can be stopped (SIGTERM, waiting for its exit) and started again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    process: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=subprocess.DEVNULL,
                                        stderr=self.log.open("a"), start_new_session=True)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> float:
        """Signal and wait; returns how long the exit took."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return time.monotonic() - started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class DrillPostgres:
    """A PostgreSQL cluster of the drill's own (never the shared 5432 one), so it can be
    restarted and stopped: initdb into a temporary folder, a free port, `pg_ctl`."""

    def __init__(self, folder: Path) -> None:
        self.data = folder / "pgdata"
        self.port = free_port()
        self.log = folder / "postgres.log"
        subprocess.run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       check=True, capture_output=True, user=_pg_user(), env=_pg_env())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n"
                       "max_connections = 200\nfsync = off\n")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", *args],
                       check=True, capture_output=True, user=_pg_user(), env=_pg_env())

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")


def _pg_user() -> str | None:
    # initdb refuses to run as root; the drills run as root in CI containers.
    return "postgres" if os.geteuid() == 0 else None


def _pg_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class Stack:
    """The simulator, `servers` API processes (no worker inside), `workers` job workers, and
    optionally HAProxy in front (deploy/haproxy.cfg), a drill-owned Redis and PostgreSQL.
    `front_url` is what clients talk to: HAProxy when there is one, else the first server."""

    def __init__(self, *, servers: int = 2, workers: int = 1, haproxy: bool = False, redis: str = "shared",
                 own_postgres: bool = False, sim_knobs: dict | None = None, env: dict[str, str] | None = None,
                 webhooks: bool = True, keep: bool = False, spare: int = 0, admin_url: str = ADMIN_URL) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="paymentd-drill-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self.keep, self.spare = keep or bool(os.environ.get("PAYMENTD_DRILL_KEEP")), spare
        self.procs: list[Proc] = []
        self.servers: list[Proc] = []
        self.workers: list[Proc] = []
        self.front: Proc | None = None
        self.redis: Proc | None = None
        self.postgres: DrillPostgres | None = None
        self.n_servers, self.n_workers, self.use_haproxy = servers, workers, haproxy
        self.redis_mode, self.own_postgres = redis, own_postgres
        self.sim_knobs, self.extra_env, self.webhooks = sim_knobs or {}, env or {}, webhooks
        self.database_url = ""
        self._admin_url = admin_url
        self._dbname = f"paymentd_drill_{uuid.uuid4().hex[:10]}"

    # -- lifecycle

    def __enter__(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout=40)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop()
        elif self.database_url:
            with contextlib.suppress(Exception), psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._dbname}" WITH (FORCE)')
        if not self.keep:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self) -> None:
        if self.own_postgres:
            self.postgres = DrillPostgres(self.folder)
            self.postgres.start()
            self._admin_url = self.postgres.admin_url
        with psycopg.connect(self._admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self._dbname}"')
        self.database_url = self._admin_url.rsplit("/", 1)[0] + "/" + self._dbname
        redis_url = None
        if self.redis_mode == "own":
            port = free_port()
            self.redis = self._proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                              "--save", "", "--appendonly", "no"], {}, port)
            self.redis.start()
            wait_until(lambda: _redis_ping(port), 10, "redis answering")
            redis_url = f"redis://127.0.0.1:{port}/0"
        elif self.redis_mode == "shared":
            redis_url = "redis://127.0.0.1:6379/0"
        sim = self._proc("sim", [str(BIN / "python"), "-m", "stripe_sim", "--host", "127.0.0.1", "--log-level",
                                 "warning"], {}, free_port())
        sim.argv += ["--port", str(sim.port)]
        sim.start()
        self.sim_url = sim.url
        wait_until(lambda: status_of(f"{sim.url}/_sim/health") == 200, 30, "simulator up")
        knobs = {"request_log_limit": 1_000_000, **self.sim_knobs}
        httpx.post(f"{sim.url}/_sim/config", json=knobs, timeout=10).raise_for_status()
        self.front_port = free_port() if self.use_haproxy else None
        server_ports = [free_port() for _ in range(self.n_servers)]
        # HAProxy also lists `spare` ports where nothing runs yet (its check keeps them out):
        # a surge restart starts the replacement there before the old process drains.
        self.spare_ports = [free_port() for _ in range(self.spare)]
        front = f"http://127.0.0.1:{self.front_port or server_ports[0]}"
        secret = None
        if self.webhooks:
            from paymentd.jobs.reconciler import PAYMENT_EVENT_TYPES

            form = [("url", f"{front}/api/webhooks/stripe"),
                    *((f"enabled_events[{i}]", t) for i, t in enumerate(
                        t for t in PAYMENT_EVENT_TYPES if t.startswith("payment_intent.")))]
            answer = httpx.post(f"{sim.url}/v1/webhook_endpoints", content=urlencode(form), timeout=10,
                                headers={"Authorization": f"Bearer {SIM_KEY}",
                                         "Content-Type": "application/x-www-form-urlencoded"})
            answer.raise_for_status()
            secret = answer.json()["secret"]
        self.env = base_env(**{
            "PAYMENTD_STRIPE_PROCESSES": str(self.n_servers + self.n_workers), **self.extra_env})
        self.env.update(
            DATABASE_URL=self.database_url, STRIPE_API_BASE=sim.url,
            PAYMENTD_DATA_DIR=str(self.folder / "data"),  # the sandbox's keys, shared by every process
            PAYMENTD_REDIS_KEY_PREFIX=f"drill-{uuid.uuid4().hex[:8]}", PAYMENTD_LOG_LEVEL="WARNING",
            PAYMENTD_RUN_WORKER="false",
            **({"REDIS_URL": redis_url} if redis_url else {}),
            **({"STRIPE_WEBHOOK_SECRET": secret} if secret else {}),
        )
        self.env.update(self.extra_env)
        self.cli("migrate")
        account = f"drill-{uuid.uuid4().hex[:8]}"
        self.account_id = self.cli("account", "create", account)
        self.key = self.cli("apikey", "create", "--account", account, "--scope", "admin")
        for i, port in enumerate(server_ports):
            server = self._proc(f"serve-{i}", [str(BIN / "paymentd"), "serve", "--port", str(port)], self.env, port)
            self.servers.append(server.start())
        for i in range(self.n_workers):
            self.workers.append(self._proc(f"worker-{i}", [str(BIN / "paymentd"), "worker"], self.env).start())
        for server in self.servers:
            self.wait_ready(server)
        if self.use_haproxy:
            config = self.folder / "haproxy.cfg"
            lines = [(ROOT / "deploy" / "haproxy.cfg").read_text()]
            lines += [f"    server slot-{port} 127.0.0.1:{port}\n"
                      for port in [*(s.port for s in self.servers), *self.spare_ports]]
            config.write_text("".join(lines))
            self.front = self._proc("haproxy", ["haproxy", "-db", "-f", str(config)],
                                    {**os.environ, "PAYMENTD_FRONT_BIND": f"127.0.0.1:{self.front_port}"},
                                    self.front_port)
            self.front.start()
            wait_until(lambda: status_of(f"{self.front.url}/healthz") == 200, 20, "haproxy up")
            time.sleep(1.5)  # every server through `rise` checks
        self.front_url = front

    def _proc(self, name: str, argv: list[str], env: dict[str, str], port: int | None = None) -> Proc:
        proc = Proc(name, argv, env or dict(os.environ), self.folder / f"{name}.log", port)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(BIN / "paymentd"), *args], env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode:
            raise RuntimeError(f"paymentd {' '.join(args)}: {done.stderr[-2000:]}")
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""

    def wait_ready(self, server: Proc, timeout: float = 60) -> float:
        def ready() -> bool:
            if not server.alive():
                raise RuntimeError(f"{server.name} exited: {server.log.read_text()[-2000:]}")
            return status_of(f"{server.url}/readyz") == 200

        return wait_until(ready, timeout, f"{server.name} ready")

    def restart(self, proc: Proc) -> dict[str, float]:
        """SIGTERM, wait for the exit, start again, wait until it serves (and the front
        has it back): the step of a rolling restart."""
        stopped = proc.stop()
        started = time.monotonic()
        proc.start()
        if proc.port is not None:
            self.wait_ready(proc)
            if self.front is not None:
                time.sleep(1.5)  # `rise 2` checks 500 ms apart, and a margin
        return {"exit_s": round(stopped, 2), "back_s": round(time.monotonic() - started, 2)}

    def surge_restart(self, proc: Proc) -> dict[str, float]:
        """Replace an API process without losing capacity: start its successor on a spare
        slot, wait until HAProxy has it, then SIGTERM the old one (its port becomes the spare)."""
        port = self.spare_ports.pop(0)
        started = time.monotonic()
        successor = Proc(proc.name, [*proc.argv[:-1], str(port)], proc.env, proc.log, port)
        self.procs.append(successor.start())
        self.wait_ready(successor)
        time.sleep(1.5)  # HAProxy's `rise 2` checks 500 ms apart, and a margin
        back = time.monotonic() - started
        stopped = proc.stop()
        self.procs.remove(proc)
        self.servers[self.servers.index(proc)] = successor
        self.spare_ports.append(proc.port)  # type: ignore[arg-type]
        return {"exit_s": round(stopped, 2), "back_s": round(back, 2)}

    def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.sim_url}{path}", timeout=30, **kwargs)
        answer.raise_for_status()
        return answer.json()


def _redis_ping(port: int) -> bool:
    import redis

    return bool(redis.Redis(port=port, socket_timeout=1).ping())


# ----------------------------------------------------------------- load


@dataclass
class Sample:
    at: float  # time.monotonic() when sent
    ms: float
    op: str
    kind: str  # "ok", "202", "http 503 service_unavailable", "connect", "disconnected", "timeout"


@dataclass
class Ledger:
    samples: list[Sample] = field(default_factory=list)
    created: dict[str, str] = field(default_factory=dict)  # payment id -> status the client last saw
    confirm_accepted: set[str] = field(default_factory=set)  # confirm answered 200 or 202
    gave_up: Counter = field(default_factory=Counter)  # operations the client abandoned after its tries

    def counts(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        return Counter(s.kind for s in self.samples if since <= s.at < until)

    def failures(self, since: float = 0.0, until: float = float("inf")) -> Counter:
        return Counter({k: n for k, n in self.counts(since, until).items() if k not in ("ok", "202")})

    def p99(self, since: float = 0.0, until: float = float("inf")) -> float:
        values = sorted(s.ms for s in self.samples if since <= s.at < until)
        return round(values[min(len(values) - 1, int(0.99 * len(values)))], 1) if values else float("nan")


class Load:
    """`rate` payments a second (create, then confirm with pm_card_visa), paced on a fixed
    schedule in a thread of its own. Every request is counted by outcome. With `retry`, a
    transient answer (409/429/5xx/connection error) is tried again with the same
    Idempotency-Key after Retry-After, as a careful client does; without, each failure is final."""

    def __init__(self, url: str, key: str, *, rate: float, retry: bool = False, max_tries: int = 40,
                 timeout_s: float = 45.0) -> None:
        self.url, self.key, self.rate, self.retry = url, key, rate, retry
        self.max_tries, self.timeout_s = max_tries, timeout_s
        self.ledger = Ledger()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.user_id = ""

    def __enter__(self) -> Load:
        self.user_id = httpx.post(f"{self.url}/api/users", json={"email": "drill@example.com", "name": "Drill"},
                                  headers={"Authorization": f"Bearer {self.key}"}, timeout=30).json()["id"]
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="drill-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    async def _run(self) -> None:
        async with aiohttp.ClientSession(
                self.url, headers={"Authorization": f"Bearer {self.key}"},
                connector=aiohttp.TCPConnector(limit=500),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as client:
            tasks: set[asyncio.Task] = set()
            started, i = time.monotonic(), 0
            while not self._stop.is_set():
                due = started + i / self.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(self._payment(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if tasks:
                await asyncio.wait(tasks)

    async def _call(self, client: aiohttp.ClientSession, op: str, method: str, path: str,
                    body: dict | None = None) -> tuple[int, dict] | None:
        idem = f"drill-{uuid.uuid4()}"
        for _ in range(self.max_tries):
            sent = time.monotonic()
            retry_after = 0.5
            try:
                headers = {"Idempotency-Key": idem} if method == "POST" else {}
                async with client.request(method, path, json=body, headers=headers) as response:
                    status = response.status
                    retry_after = float(response.headers.get("retry-after", "0.5"))
                    try:
                        answer = await response.json(content_type=None)
                    except json.JSONDecodeError:  # not paymentd's answer (the front's own error page)
                        answer = {"error": {"code": "not_paymentd_json"}}
            except aiohttp.ClientConnectorError:
                kind, status, answer = "connect", 0, {}
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
                kind, status, answer = "disconnected", 0, {}
            except (TimeoutError, asyncio.TimeoutError):
                kind, status, answer = "timeout", 0, {}
            except (aiohttp.ClientError, json.JSONDecodeError) as error:
                kind, status, answer = f"client {type(error).__name__}", 0, {}
            else:
                if status == 202:
                    kind = "202"
                elif status < 400:
                    kind = "ok"
                else:
                    code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
                    kind = f"http {status} {code}"
            self.ledger.samples.append(Sample(sent, (time.monotonic() - sent) * 1000, op, kind))
            if status and status not in TRANSIENT:
                return status, answer
            if not self.retry:
                self.ledger.gave_up[op] += 1
                return None
            await asyncio.sleep(min(max(retry_after, 0.2), 5.0))
        self.ledger.gave_up[op] += 1
        return None

    async def _payment(self, client: aiohttp.ClientSession) -> None:
        created = await self._call(client, "create", "POST", "/api/payments/create",
                                   {"user_id": self.user_id, "amount": "10.00"})
        if created is None or created[0] >= 300:
            return
        payment_id = created[1]["id"]
        self.ledger.created[payment_id] = created[1]["status"]
        confirmed = await self._call(client, "confirm", "POST", "/api/payments/confirm",
                                     {"payment_id": payment_id, "payment_method": "pm_card_visa"})
        if confirmed is not None and confirmed[0] in (200, 202):
            self.ledger.confirm_accepted.add(payment_id)
            self.ledger.created[payment_id] = confirmed[1]["status"]


# ----------------------------------------------------------------- the check afterwards

SETTLED = {"succeeded", "requires_payment_method", "canceled", "requires_action", "requires_capture"}


def stripe_intents(stack: Stack) -> dict[str, dict]:
    """Every PaymentIntent the simulator holds, by id."""
    found: dict[str, dict] = {}
    after = None
    while True:
        params = {"limit": 100, **({"starting_after": after} if after else {})}
        page = httpx.get(f"{stack.sim_url}/v1/payment_intents", params=params,
                         headers={"Authorization": f"Bearer {SIM_KEY}"}, timeout=60).json()
        for intent in page["data"]:
            found[intent["id"]] = intent
        if not page.get("has_more") or not page["data"]:
            return found
        after = page["data"][-1]["id"]


def check(stack: Stack, ledger: Ledger, *, settle_timeout: float = 240) -> dict[str, Any]:
    """The database against the client's ledger and the simulator's records, once every
    accepted payment has settled (or `settle_timeout` passed: then what has not is reported).

    - lost: a payment the client was told exists that the database lacks; a confirm the client
      was told was accepted whose payment never reached Stripe or never settled; an intent
      Stripe charged for a payment the database does not record as charged;
    - duplicated: a payment with two PaymentIntents, an intent confirmed under two keys;
    - jobs: failed (dead letters) or left unfinished; webhook inbox rows never processed."""
    started = time.monotonic()

    def rows() -> dict[str, tuple[str, str | None]]:
        with psycopg.connect(stack.database_url) as conn:
            found = conn.execute("SELECT id::text, status, stripe_payment_intent_id FROM payments "
                                 "WHERE account_id = %s", (stack.account_id,)).fetchall()
        return {pid: (status, intent) for pid, status, intent in found}

    def settled() -> bool:
        current = rows()
        if not all(current.get(pid, ("", None))[0] in SETTLED for pid in ledger.confirm_accepted):
            return False
        with psycopg.connect(stack.database_url) as conn:  # and the queue has applied every event
            waiting = conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') "
                                   "AND task_name = 'paymentd.apply_webhook_event'").fetchone()[0]
        return waiting == 0

    with contextlib.suppress(TimeoutError):
        wait_until(settled, settle_timeout, "every accepted payment settled", interval=1.0)
    settle_s = round(time.monotonic() - started, 1)
    db = rows()
    intents = stripe_intents(stack)
    log = stack.sim("GET", "/_sim/requests")["data"]
    missing = [pid for pid in ledger.created if pid not in db]
    unsettled = [pid for pid in ledger.confirm_accepted if db.get(pid, ("", None))[0] not in SETTLED]
    by_payment = {i.get("metadata", {}).get("paymentd_payment_id"): i for i in intents.values()}
    mismatched = []
    for pid, (status, intent_id) in db.items():
        intent = intents.get(intent_id or "") or by_payment.get(pid)
        if intent is None:
            continue
        if intent["status"] == "succeeded" and status not in ("succeeded", "partially_refunded", "refunded",
                                                                "disputed"):
            mismatched.append(pid)  # charged at Stripe, not recorded as such
    with psycopg.connect(stack.database_url) as conn:
        jobs = dict(conn.execute("SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY status").fetchall())
        inbox = conn.execute("SELECT count(*) FILTER (WHERE processed_at IS NULL), count(*) "
                             "FROM webhook_events").fetchone()
    dup = duplicates_at_stripe(log)
    return {
        "payments_created_acknowledged": len(ledger.created),
        "confirms_accepted": len(ledger.confirm_accepted),
        "payments_in_database": len(db),
        "intents_at_stripe": len(intents),
        "lost_payments": len(missing) + len(unsettled) + len(mismatched),
        "lost_detail": {"acknowledged_not_in_db": missing[:5], "accepted_not_settled": unsettled[:5],
                        "charged_not_recorded": mismatched[:5]},
        "duplicated_payments": dup["payments_with_two_intents"] + dup["intents_confirmed_twice"],
        "duplicated_detail": dup,
        "settle_s": settle_s,
        "jobs": jobs,
        "jobs_failed": jobs.get("failed", 0),
        "jobs_unfinished": jobs.get("doing", 0),
        "webhooks_unprocessed": inbox[0],
        "webhooks_received": inbox[1],
    }


# ----------------------------------------------------------------- results


def machine() -> str:
    import platform

    load = os.getloadavg()
    return (f"{platform.node()}, {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
            f"Python {platform.python_version()}, load average {load[0]:.2f} at the end; "
            "shared with other engineers' builds and tests")


def outcome_table(ledger: Ledger, windows: list[tuple[str, float, float]]) -> str:
    lines = ["| window | requests | ok (200/201) | 202 | failed, by kind | p99 ms |", "| --- | --- | --- | --- | --- | --- |"]
    for name, since, until in windows:
        counts = ledger.counts(since, until)
        failed = ledger.failures(since, until)
        text = ", ".join(f"{k}: {n}" for k, n in sorted(failed.items())) or "none"
        lines.append(f"| {name} | {sum(counts.values())} | {counts.get('ok', 0)} | {counts.get('202', 0)} | "
                     f"{text} | {ledger.p99(since, until)} |")
    return "\n".join(lines)


def checks_table(summary: dict[str, Any]) -> list[str]:
    """The drill's checks (lost, duplicated, settled, ...) as markdown table lines."""
    return ["| check | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in summary.items()]]


def write_result(name: str, title: str, command: str, body: str, out: str | None) -> Path | None:
    from datetime import UTC, datetime

    text = (f"# {title}\n\n- date: {datetime.now(UTC).isoformat(timespec='seconds')}\n- command: `{command}`\n"
            f"- machine: {machine()}\n- commit: {_commit()}\n\n{body}\n")
    if out == "-":
        print(text)
        return None
    path = Path(out) if out else ROOT / "bench" / "results" / f"{name}-{datetime.now(UTC).date()}.md"
    path.write_text(text)
    print(text)
    print(f"written to {path}")
    return path


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
