"""A newcomer's first hour, as the README leads it: real `paymentd` processes.

Sandbox mode restarted keeps what its simulator knew (a payment made before is refunded
after, a saved card still pays) and shows the same demo key; the CLI's first mistakes
get clear answers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.cluster import base_env, free_port

PAYMENTD = str(Path(sys.executable).with_name("paymentd"))
KEY_RE = re.compile(r"pd_[a-z0-9]{12}_[A-Za-z0-9]{43}")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([PAYMENTD, *args], env=env, capture_output=True, text=True, timeout=180)


def start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen([PAYMENTD, "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 240
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve never became ready"
        time.sleep(0.3)


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) in (0, 143)


@pytest.mark.slow
def test_sandbox_restart_keeps_the_simulator_and_the_demo_key(database_url: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = base_env(DATABASE_URL=database_url, PAYMENTD_DATA_DIR=str(data), PAYMENTD_LOG_LEVEL="WARNING")
    wait = {"Prefer": "wait=20"}

    port = free_port()
    first = start(env, port, tmp_path / "first.log")
    try:
        key = KEY_RE.search((tmp_path / "first.log").read_text()).group(0)
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                           headers={"Authorization": f"Bearer {key}", **wait})
        user = api.post("/api/users", json={"email": "ann@example.com", "name": "Ann"}).json()
        saved = api.post(f"/api/users/{user['id']}/payment-methods", json={"payment_method": "pm_card_visa"})
        assert saved.status_code == 201, saved.text
        payment = api.post("/api/payments/create", json={"user_id": user["id"], "amount": "19.99"}).json()
        paid = api.post("/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": "pm_card_visa"})
        assert paid.status_code == 200 and paid.json()["status"] == "succeeded", paid.text
        api.close()
    finally:
        stop(first)
    assert (data / "stripe-sim-state.json").stat().st_mode & 0o077 == 0
    assert (data / "demo-api-key").stat().st_mode & 0o077 == 0

    port = free_port()
    second = start(env, port, tmp_path / "second.log")
    try:
        again = KEY_RE.search((tmp_path / "second.log").read_text()).group(0)
        assert again == key, "the demo key is shown again, not a new one minted"
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                           headers={"Authorization": f"Bearer {key}", **wait})
        refund = api.post("/api/payments/refund", json={"payment_id": payment["id"]})
        assert refund.status_code == 201, refund.text
        assert refund.json()["status"] == "succeeded"
        assert api.get(f"/api/payments/{payment['id']}").json()["status"] == "refunded"
        # The card saved before the restart pays after it.
        later = api.post("/api/payments/create", json={"user_id": user["id"], "amount": "5.00"}).json()
        with_saved = api.post("/api/payments/confirm",
                              json={"payment_id": later["id"], "payment_method": saved.json()["id"]})
        assert with_saved.status_code == 200 and with_saved.json()["status"] == "succeeded", with_saved.text
        api.close()
    finally:
        stop(second)

    # One live demo key, however many starts.
    (data / "demo-api-key").write_text("pd_aaaaaaaaaaaa_" + "x" * 43)  # broken: replaced, the old one revoked
    third = start(env, free_port(), tmp_path / "third.log")
    try:
        fresh = KEY_RE.search((tmp_path / "third.log").read_text()).group(0)
        assert fresh != key
    finally:
        stop(third)
    listed = run("apikey", "list", "--account", "demo", "--json", env=env)
    live = [line for line in listed.stdout.splitlines() if '"status": "active"' in line]
    assert len(live) == 1 and fresh[:15] in live[0], listed.stdout


def test_cli_first_mistakes_get_clear_answers(database_url: str) -> None:
    env = base_env(DATABASE_URL=database_url)
    name = f"shop-{uuid.uuid4().hex[:8]}"
    assert run("account", "create", name, env=env).returncode == 0
    twice = run("account", "create", name, env=env)
    assert twice.returncode == 1
    assert "already exists" in twice.stderr and "Traceback" not in twice.stderr and twice.stdout == ""

    # `apikey revoke` takes the whole key, or the id `create` printed.
    created = run("apikey", "create", "--account", name, "--scope", "payments:read", env=env)
    whole = created.stdout.strip()
    assert run("apikey", "revoke", whole, env=env).returncode == 0
    other = run("apikey", "create", "--account", name, "--scope", "payments:read", env=env)
    printed_id = re.search(r"created key ([0-9a-f-]{36})", other.stderr).group(1)
    assert f"apikey revoke {printed_id}" in other.stderr
    revoked = run("apikey", "revoke", printed_id, env=env)
    assert revoked.returncode == 0 and printed_id in revoked.stderr
    listed = run("apikey", "list", "--account", name, "--json", env=env).stdout
    assert listed.count('"status": "revoked"') == 2


def test_make_run_takes_the_port_and_address() -> None:
    root = Path(__file__).resolve().parents[2]
    planned = subprocess.run(["make", "-n", "-C", str(root), "run", "PORT=9123", "HOST=0.0.0.0"],
                             capture_output=True, text=True, timeout=30)
    assert planned.returncode == 0, planned.stderr
    assert "paymentd serve --host 0.0.0.0 --port 9123" in planned.stdout
    default = subprocess.run(["make", "-n", "-C", str(root), "run"], capture_output=True, text=True, timeout=30)
    assert "paymentd serve --host 127.0.0.1 --port 8000" in default.stdout
