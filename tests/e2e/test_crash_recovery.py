"""SIGKILL paymentd while Stripe holds its confirm; restart; nothing lost, nothing twice.

paymentd runs as a real process against the test database and the simulator,
which answers confirms only after 3 s. The process is killed mid-call; after a
restart, the reconciler (and, separately, the client retrying with its
Idempotency-Key) bring the payment to the status Stripe has.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from paymentd.auth.keys import Scope
from tests.conftest import make_key, sim_requests
from tests.e2e.test_cli import PAYMENTD, clean_env, free_port

CONFIRM = "POST /v1/payment_intents/{intent}/confirm"


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [PAYMENTD, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=log.open("a")
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(log.read_text()[-2000:])


@pytest.fixture
def env(database_url: str, sim) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return clean_env(
        DATABASE_URL=database_url,
        STRIPE_API_BASE=sim.url,
        PAYMENTD_RUN_WORKER="false",
        PAYMENTD_RECONCILE_AFTER_S="1",
        PAYMENTD_LOG_LEVEL="WARNING",
    )


async def _prepare(database, sim, sim_config, port: int, env: dict[str, str], log: Path):  # type: ignore[no-untyped-def]
    _, key = await make_key(database, f"crash-{os.getpid()}-{time.monotonic_ns()}", list(Scope))
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{port}"
    process = start(env, port, log)
    user = httpx.post(f"{base}/api/users", json={"email": "c@x.co", "name": "C"}, headers=headers).json()
    payment = httpx.post(f"{base}/api/payments/create", json={"user_id": user["id"], "amount": "30.00"},
                         headers=headers).json()
    sim_config(latency_by_operation={CONFIRM: {"latency_ms": 3000}})
    return process, headers, base, payment


def _kill_mid_confirm(process: subprocess.Popen, base: str, headers: dict, payment: dict, key: str) -> None:
    body = {"payment_id": payment["id"], "payment_method": "pm_card_visa"}
    with pytest.raises(httpx.HTTPError):
        # The request waits for Stripe (Prefer), and the process dies under it.
        with httpx.Client(timeout=10) as client:
            import threading

            threading.Timer(1.0, lambda: process.send_signal(signal.SIGKILL)).start()
            client.post(f"{base}/api/payments/confirm", json=body,
                        headers={**headers, "Idempotency-Key": key, "Prefer": "wait=10"})
    process.wait()


def _stripe_saw_one_of_each(sim, payment: dict) -> None:  # type: ignore[no-untyped-def]
    creates = {r["idempotency_key"] for r in sim_requests(sim, operation="POST /v1/payment_intents")
               if payment["id"] in (r["idempotency_key"] or "")}
    confirms = {r["idempotency_key"] for r in sim_requests(sim, operation=CONFIRM)
                if payment["stripe_payment_intent_id"] in r["path"]}
    assert creates == {f"paymentd:{payment['id']}:create"}
    assert confirms == {f"paymentd:{payment['id']}:confirm:1"}, "no second confirm with a different key"


@pytest.mark.slow
async def test_reconciler_finishes_a_payment_whose_process_died(  # type: ignore[no-untyped-def]
    database, sim, sim_config, env, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    process, headers, base, payment = await _prepare(database, sim, sim_config, port, env, log)
    _kill_mid_confirm(process, base, headers, payment, "crash-1")
    time.sleep(3)  # Stripe finishes the confirm it was holding

    restarted = start(env, port, log)
    try:
        swept = subprocess.run([PAYMENTD, "reconcile"], env=env, capture_output=True, text=True, timeout=60)
        assert swept.returncode == 0, swept.stderr
        detail = httpx.get(f"{base}/api/payments/{payment['id']}", headers=headers).json()
        assert detail["status"] == "succeeded", detail
        assert detail["events"][-1]["source"] == "reconciler"
        _stripe_saw_one_of_each(sim, detail)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)


@pytest.mark.slow
async def test_client_retry_with_its_key_resumes_the_same_attempt(  # type: ignore[no-untyped-def]
    database, sim, sim_config, env, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**env, "PAYMENTD_MAX_WAIT_S": "2"}  # the idempotency lease (wait + 5 s) runs out quickly
    process, headers, base, payment = await _prepare(database, sim, sim_config, port, env, log)
    _kill_mid_confirm(process, base, headers, payment, "crash-2")

    restarted = start(env, port, log)
    try:
        body = {"payment_id": payment["id"], "payment_method": "pm_card_visa"}
        deadline = time.monotonic() + 30
        while True:
            retry = httpx.post(f"{base}/api/payments/confirm", json=body,
                               headers={**headers, "Idempotency-Key": "crash-2", "Prefer": "wait=2"}, timeout=10)
            if retry.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(1)  # still leased to the dead process
        assert retry.status_code in (200, 202), retry.text
        for _ in range(100):
            detail = httpx.get(f"{base}/api/payments/{payment['id']}", headers=headers).json()
            if detail["status"] == "succeeded":
                break
            time.sleep(0.1)
        assert detail["status"] == "succeeded", detail
        _stripe_saw_one_of_each(sim, detail)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)
