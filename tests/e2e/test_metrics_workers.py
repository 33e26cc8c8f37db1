"""/metrics adds up what every process did: `paymentd serve --workers 2` as a real
process, a known workload spread over both workers, and the counts compared with it."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import base_env, free_port

BIN = Path(sys.executable).parent
TOKEN = "metrics-test-token"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def total(found: dict, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in found.items() if n == name and wanted <= lbls)


def per_process(folder: Path, tmp: Path) -> dict[int, dict]:
    """Each process's own values, read from its files alone (what /metrics adds up)."""
    pids: dict[int, list[Path]] = defaultdict(list)
    for file in folder.glob("*.db"):
        pids[int(file.stem.rsplit("_", 1)[-1])].append(file)
    result = {}
    for pid, files in pids.items():
        alone = tmp / f"pid-{pid}"
        alone.mkdir(parents=True)
        for file in files:
            shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        result[pid] = {(s.name, frozenset(s.labels.items())): s.value
                       for metric in registry.collect() for s in metric.samples}
    return result


@pytest.mark.slow
def test_counts_add_up_across_two_worker_processes(database_url: str, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    metrics_dir = tmp_path / "metrics"
    env = base_env(DATABASE_URL=database_url, STRIPE_API_BASE=sim.url, PAYMENTD_DATA_DIR=str(tmp_path / "data"),
                   PAYMENTD_METRICS_DIR=str(metrics_dir), PAYMENTD_METRICS_TOKEN=TOKEN,
                   PAYMENTD_RUN_WORKER="false", PAYMENTD_LOG_LEVEL="WARNING")
    account = f"metrics-{uuid.uuid4().hex[:8]}"
    subprocess.run([str(BIN / "paymentd"), "account", "create", account], env=env, check=True, capture_output=True)
    key = subprocess.run([str(BIN / "paymentd"), "apikey", "create", "--account", account, "--scope", "admin"],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    # A leftover of a process long gone: cleaned away at start, never added in.
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999999.db").write_bytes(b"stale")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([str(BIN / "paymentd"), "serve", "--port", str(port), "--workers", "2"],
                              env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve never became ready"
            time.sleep(0.3)
        assert not (metrics_dir / "counter_999999999.db").exists()

        # Connections go to whichever worker accepts first, which a busy machine may leave
        # to one of them for a while: bursts of concurrent ones until both have served.
        # /readyz answers once one worker is up; on a loaded machine the other may take a
        # minute more to start accepting.
        warmup = 0
        settle = time.monotonic() + 240
        while time.monotonic() < settle:
            with ThreadPoolExecutor(16) as pool:
                codes = list(pool.map(lambda _: httpx.get(f"{url}/healthz", timeout=30).status_code, range(16)))
            assert codes == [200] * 16
            warmup += 16
            busy = [pid for pid, values in per_process(metrics_dir, tmp_path / f"w{warmup}").items()
                    if total(values, "paymentd_http_requests_total", route="/healthz")]
            if len(busy) == 2:
                break
            time.sleep(1)
        assert len(busy) == 2, "one worker took every connection"

        headers = {"Authorization": f"Bearer {key}", "Prefer": "wait=20"}

        def post(path: str, body: dict) -> httpx.Response:
            # A new connection each time: the kernel spreads them over both workers.
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                return client.post(path, json=body)

        user = post("/api/users", {"email": "m@example.com", "name": "M"}).json()
        methods = ["pm_card_visa"] * 6 + ["pm_card_chargeDeclined"] * 3 + ["pm_does_not_exist"]
        answers = defaultdict(int)
        for method in methods:
            created = post("/api/payments/create", {"user_id": user["id"], "amount": "12.00"})
            assert created.status_code == 201, created.text
            confirmed = post("/api/payments/confirm", {"payment_id": created.json()["id"], "payment_method": method})
            answers[confirmed.status_code] += 1
        assert answers == {200: 6, 402: 3, 400: 1}, answers
        for _ in range(20):  # GETs, on fresh connections too
            assert httpx.get(f"{url}/api/payments/{user['id']}", headers=headers).status_code == 404

        assert httpx.get(f"{url}/metrics").status_code == 401  # the token is configured
        scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert scraped.status_code == 200
        found = samples(scraped.text)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)

    requests = "paymentd_http_requests_total"
    assert total(found, requests, route="/api/payments/create", status="201", method="POST") == 10
    assert total(found, requests, route="/api/payments/confirm", status="200") == 6
    assert total(found, requests, route="/api/payments/confirm", status="402") == 3
    assert total(found, requests, route="/api/payments/confirm", status="400") == 1
    assert total(found, requests, route="/api/payments/{payment_id}", status="404") == 20
    assert total(found, "paymentd_http_request_duration_seconds_count", route="/api/payments/confirm") == 10
    assert not any("route" in dict(labels) and re.search(r"[0-9a-f]{8}-", dict(labels)["route"])
                   for _, labels in found), "a raw path leaked into a label"

    moves = "paymentd_payment_status_moves_total"
    assert total(found, moves, from_status="none") == 10
    assert total(found, moves, to_status="succeeded", source="api") == 6
    assert total(found, "paymentd_payment_declines_total") == 3
    assert total(found, "paymentd_payment_declines_total", code="generic_decline") == 3
    assert total(found, "paymentd_payment_attempts_refused_total", code="resource_missing") == 1
    calls = "paymentd_stripe_calls_total"
    assert total(found, calls, operation="confirm_payment", outcome="ok") == 6
    assert total(found, calls, operation="confirm_payment", outcome="declined") == 3
    assert total(found, calls, operation="confirm_payment", outcome="invalid_request") == 1
    assert total(found, "paymentd_stripe_circuit_open") == 0
    assert ("paymentd_job_queue_oldest_age_seconds", frozenset()) in found

    # /metrics is the sum of what each worker counted.
    alone = per_process(metrics_dir, tmp_path / "end")
    assert total(found, requests, route="/healthz") == warmup

    def api(values: dict) -> float:  # the scrape itself is counted after it answered
        return sum(v for (n, labels), v in values.items() if n == requests and ("route", "/metrics") not in labels)

    served = {pid: api(values) for pid, values in alone.items()}
    assert sum(served.values()) == api(found)
