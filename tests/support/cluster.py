"""Real processes for load and failure tests: the simulator, N paymentd servers
sharing one database and one Redis, and helpers to read what reached "Stripe".

Used by the e2e tests and by bench/ scripts, so both measure the same set-up.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def base_env(**extra: str) -> dict[str, str]:
    # The tests' encryption key stays: every process on the session database must open its data keys.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAYMENTD_", "STRIPE_", "DATABASE_URL", "REDIS_URL")) or k == "PAYMENTD_ENCRYPTION_KEYS"}
    return {**env, **extra}


@dataclass
class Cluster:
    sim_url: str
    urls: list[str]
    key: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def sim_log(self) -> list[dict]:
        return httpx.get(f"{self.sim_url}/_sim/requests", timeout=30).json()["data"]

    def configure_sim(self, **knobs) -> None:  # type: ignore[no-untyped-def]
        httpx.post(f"{self.sim_url}/_sim/config", json=knobs, timeout=10).raise_for_status()


def max_per_second(timestamps: Sequence[float]) -> int:
    """The most requests in any sliding one-second window."""
    stamps = sorted(timestamps)
    best, start = 0, 0
    for end, t in enumerate(stamps):
        while t - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def duplicates_at_stripe(log: Sequence[dict]) -> dict[str, int]:
    """PaymentIntents created more than once for one payment, and intents that
    succeeded a confirm under more than one key: both must be zero."""
    creates: dict[str, set[str]] = {}
    confirms: dict[str, set[str]] = {}
    for r in log:
        key = r.get("idempotency_key") or ""
        if r.get("status") != 200 or not key.startswith("paymentd:"):
            continue
        if r["operation"] == "POST /v1/payment_intents":
            creates.setdefault(key.split(":")[1], set()).add(key)
        elif r["operation"] == "POST /v1/payment_intents/{intent}/confirm":
            confirms.setdefault(r["path"].split("/")[3], set()).add(key)
    return {
        "payments_with_two_intents": sum(len(v) > 1 for v in creates.values()),
        "intents_confirmed_twice": sum(len(v) > 1 for v in confirms.values()),
    }


def statuses(database_url: str, account_id: str) -> Counter:
    import psycopg

    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT status, count(*) FROM payments WHERE account_id = %s GROUP BY status",
                            (account_id,)).fetchall()
    return Counter(dict(rows))


@contextmanager
def cluster(
    database_url: str,
    *,
    servers: int = 2,
    redis_url: str | None = "redis://127.0.0.1:6379/0",
    stripe_rps: int = 100,
    sim_knobs: dict | None = None,
    env: dict[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Cluster]:
    """The simulator and `servers` paymentd processes; all stopped on exit."""
    log_dir = log_dir or Path("/tmp")
    sim_port = free_port()
    sim = subprocess.Popen(
        [str(BIN / "python"), "-m", "stripe_sim", "--host", "127.0.0.1", "--port", str(sim_port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=(log_dir / "sim.log").open("w"),
    )
    processes = [sim]
    try:
        sim_url = f"http://127.0.0.1:{sim_port}"
        wait_http(f"{sim_url}/_sim/health", sim)
        if sim_knobs:
            httpx.post(f"{sim_url}/_sim/config", json=sim_knobs).raise_for_status()
        common = base_env(
            DATABASE_URL=database_url,
            STRIPE_API_BASE=sim_url,
            PAYMENTD_STRIPE_RPS=str(stripe_rps),
            PAYMENTD_REDIS_KEY_PREFIX=f"cluster-{uuid.uuid4().hex[:8]}",
            PAYMENTD_LOG_LEVEL="WARNING",
            **({"REDIS_URL": redis_url} if redis_url else {}),
            **(env or {}),
        )
        account = f"cluster-{uuid.uuid4().hex[:8]}"
        subprocess.run([str(BIN / "paymentd"), "account", "create", account], env=common, check=True,
                       capture_output=True)
        key = subprocess.run([str(BIN / "paymentd"), "apikey", "create", "--account", account, "--scope", "admin"],
                             env=common, check=True, capture_output=True, text=True).stdout.strip()
        urls = []
        for i in range(servers):
            port = free_port()
            process = subprocess.Popen(
                [str(BIN / "paymentd"), "serve", "--port", str(port)], env=common,
                stdout=subprocess.DEVNULL, stderr=(log_dir / f"paymentd-{i}.log").open("w"),
            )
            processes.append(process)
            wait_http(f"http://127.0.0.1:{port}/healthz", process)
            urls.append(f"http://127.0.0.1:{port}")
        yield Cluster(sim_url, urls, key, processes)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
