"""The `paymentd` command as an operator uses it: real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

PAYMENTD = str(Path(sys.executable).with_name("paymentd"))
KEY_RE = re.compile(r"pd_[a-z0-9]{12}_[A-Za-z0-9]{43}")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([PAYMENTD, *args], env=env, capture_output=True, text=True, timeout=120)


def clean_env(**extra: str) -> dict[str, str]:
    # The tests' encryption key stays: every process on the session database must open its data keys.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAYMENTD_", "STRIPE_", "DATABASE_URL")) or k == "PAYMENTD_ENCRYPTION_KEYS"}
    return {**env, **extra}


def test_apikey_create_prints_only_the_secret(database_url: str) -> None:
    env = clean_env(DATABASE_URL=database_url)
    assert run("account", "create", "cli-shop", env=env).returncode == 0
    created = run("apikey", "create", "--account", "cli-shop", "--scope", "payments:read", env=env)
    assert created.returncode == 0, created.stderr
    assert KEY_RE.fullmatch(created.stdout.strip()), "stdout must carry the key alone"
    assert created.stdout.count("\n") == 1

    prefix = created.stdout.split("_")[1]
    assert run("apikey", "revoke", prefix, env=env).returncode == 0
    assert run("apikey", "revoke", prefix, env=env).returncode == 1  # already revoked

    unknown = run("apikey", "create", "--account", "nobody", "--scope", "admin", env=env)
    assert unknown.returncode == 1 and unknown.stdout == ""
    bad_scope = run("apikey", "create", "--account", "cli-shop", "--scope", "everything", env=env)
    assert bad_scope.returncode != 0 and bad_scope.stdout == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = clean_env(PAYMENTD_DATA_DIR=str(data_dir))
    return subprocess.Popen([PAYMENTD, "serve", "--port", str(port)], env=env, stderr=log.open("w"), stdout=subprocess.DEVNULL)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "paymentd serve exited early"
        try:
            response = httpx.get(f"{url}/readyz", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("paymentd never became ready")


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])


@pytest.mark.slow
def test_serve_on_embedded_defaults_recovers_and_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    tmp_path.chmod(0o755)  # the embedded server runs as an unprivileged user when we are root
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"

    first = start_serve(data_dir, port, log)
    try:
        ready = wait_ready(url, first)
        assert ready["mode"] == "sandbox" and "SANDBOX" in ready["warning"]
        output = log.read_text()
        assert "SANDBOX MODE" in output
        key = KEY_RE.search(output).group(0)
        headers = {"Authorization": f"Bearer {key}"}
        user = httpx.post(f"{url}/api/users", json={"email": "a@b.co", "name": "A"}, headers=headers).json()
        pg = postmaster_pid(data_dir)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # A killed paymentd leaves its PostgreSQL behind; the next start adopts it.
    assert psutil.pid_exists(pg)

    second = start_serve(data_dir, port, log)
    try:
        wait_ready(url, second)
        again = httpx.get(f"{url}/api/users/{user['id']}", headers=headers)
        assert again.status_code == 200, "data and keys survive a restart"
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) in (0, 143)  # 143: the conventional "ended by SIGTERM"
    deadline = time.monotonic() + 20
    while psutil.pid_exists(pg) and psutil.Process(pg).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "embedded PostgreSQL still running after SIGTERM"
        time.sleep(0.2)


def test_apikey_expiry_list_revoke_by_id_or_whole_key_and_account_limits(database_url: str) -> None:
    import json

    env = clean_env(DATABASE_URL=database_url)
    assert run("account", "create", "cli-keys", env=env).returncode == 0
    created = run("apikey", "create", "--account", "cli-keys", "--scope", "payments:read", "--expires-in", "90d",
                  env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = re.search(r"created key ([0-9a-f-]{36}) \(prefix pd_([a-z0-9]{12})\)", created.stderr).group(1)
    second = run("apikey", "create", "--account", "cli-keys", "--scope", "admin", env=env).stdout.strip()

    listed = run("apikey", "list", "--account", "cli-keys", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["status"] for e in entries] == ["active", "active"]
    assert entries[0]["id"] == key_id and entries[0]["expires_at"] and entries[1]["expires_at"] is None
    assert key not in listed.stdout and second not in listed.stdout  # never a secret
    assert KEY_RE.search(run("apikey", "list", env=env).stdout) is None

    assert run("apikey", "revoke", key_id, env=env).returncode == 0
    assert run("apikey", "revoke", second, env=env).returncode == 0
    entries = [json.loads(line) for line in run("apikey", "list", "--account", "cli-keys", "--json",
                                                env=env).stdout.splitlines()]
    assert [e["status"] for e in entries] == ["revoked", "revoked"]

    for bad in (["--expires-in", "soon"], ["--expires-at", "2001-01-01T00:00:00Z"],
                ["--expires-in", "1d", "--expires-at", "2099-01-01"]):
        refused = run("apikey", "create", "--account", "cli-keys", "--scope", "admin", *bad, env=env)
        assert refused.returncode != 0 and refused.stdout == "", bad

    assert run("account", "set-limit", "cli-keys", "--rps", "50", env=env).returncode == 0
    assert run("account", "set-limit", "cli-keys", "--default", env=env).returncode == 0
    assert run("account", "set-limit", "cli-keys", env=env).returncode != 0  # neither
    assert run("account", "set-limit", "nobody-here", "--rps", "5", env=env).returncode == 1
    assert run("apikey", "list", "--account", "nobody-here", env=env).returncode == 1
