"""A data-key rotation while payments are made: real processes (paymentd serve with
its job worker, the `paymentd keys` CLI), concurrent clients, no failed request."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from paymentd.auth.keys import Scope
from paymentd.jobs.queue import conninfo
from tests.conftest import make_key
from tests.e2e.test_cli import PAYMENTD, clean_env, free_port, run
from tests.e2e.test_crash_recovery import start

CLIENTS = 6


@pytest.fixture
def env(database_url: str, sim) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return clean_env(
        DATABASE_URL=database_url,
        STRIPE_API_BASE=sim.url,
        PAYMENTD_RUN_WORKER="true",
        # Processes adopt a new key within a second (reencrypt.settle_s: 7 s).
        PAYMENTD_ENCRYPTION_REFRESH_S="1",
        PAYMENTD_RECONCILE_INTERVAL_S="3600",
        PAYMENTD_LOG_LEVEL="WARNING",
    )


def _status(env: dict[str, str]) -> dict:
    done = run("keys", "status", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _rows_under(status: dict, key_id: str) -> int:
    return sum(per_key.get(key_id, 0) for per_key in status["rows"].values())


def _job_states(database_url: str) -> list[str]:
    with psycopg.connect(conninfo(database_url)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT status FROM procrastinate_jobs WHERE task_name = 'paymentd.reencrypt' ORDER BY id")]


async def test_rotation_under_load_fails_no_request_and_leaves_nothing_under_the_old_key(
    env: dict[str, str], database, database_url: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    port = free_port()
    server = start(env, port, tmp_path / "serve.log")
    try:
        _, key = await make_key(database, f"rotate-{os.getpid()}-{time.monotonic_ns()}", list(Scope))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            user = (await client.post("/api/users", json={"email": "rot@example.com", "name": "Rot"})).json()
            old = next(k["id"] for k in _status(env)["keys"] if k["purpose"] == "data" and k["state"] == "primary")
            stop = asyncio.Event()
            failures: list[str] = []
            made: list[tuple[str, str]] = []

            async def customer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    i += 1
                    note = f"order {n}-{i}"
                    created = await client.post("/api/payments/create", json={
                        "user_id": user["id"], "amount": "12.00", "description": note,
                        "metadata": {"n": str(n)}, "receipt_email": "rot@example.com"},
                        headers={"Idempotency-Key": f"rot-{port}-{n}-{i}"})
                    if created.status_code != 201:
                        failures.append(f"create {created.status_code} {created.text[:200]}")
                        continue
                    payment = created.json()
                    confirmed = await client.post("/api/payments/confirm", json={
                        "payment_id": payment["id"], "payment_method": "pm_card_visa"})
                    if confirmed.status_code not in (200, 202):
                        failures.append(f"confirm {confirmed.status_code} {confirmed.text[:200]}")
                    made.append((payment["id"], note))
                    # And a read of an earlier one, sealed under whichever key was primary then.
                    earlier_id, earlier_note = made[len(made) // 2]
                    got = await client.get(f"/api/payments/{earlier_id}")
                    if got.status_code != 200 or got.json()["description"] != earlier_note:
                        failures.append(f"read {got.status_code} {got.text[:200]}")

            held = (await client.post("/api/users", json={"email": "held@example.com", "name": "Held"})).json()
            load = [asyncio.create_task(customer(n)) for n in range(CLIENTS)]
            await asyncio.sleep(2)
            # A transaction holding one sealed row (as a slow request would): the job skips
            # it and comes back, and meanwhile the old key provably still protects a row.
            holder = await psycopg.AsyncConnection.connect(conninfo(database_url))
            await holder.execute("SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE", (held["id"],))
            rotated = await asyncio.to_thread(run, "keys", "rotate", env=env)
            assert rotated.returncode == 0, rotated.stderr
            new = rotated.stdout.strip()
            assert new and new != old
            await asyncio.sleep(3)  # the job is under way (it skips the held row)
            early = await asyncio.to_thread(run, "keys", "retire", old, env=env)
            assert early.returncode == 1 and "refused" in early.stderr, early.stderr
            held_status = await asyncio.to_thread(_status, env)
            assert held_status["rows"]["users.email"].get(old, 0) >= 1, held_status["rows"]
            await holder.rollback()
            await holder.close()

            deadline = time.monotonic() + 120
            while "succeeded" not in _job_states(database_url):
                assert time.monotonic() < deadline, (_job_states(database_url), failures[:5])
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
                await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*load)

            assert failures == [], failures[:10]
            assert len(made) > 20
            status = await asyncio.to_thread(_status, env)
            assert _rows_under(status, old) == 0, status["rows"]
            assert all("(plaintext)" not in per_key for per_key in status["rows"].values()), status["rows"]
            assert _rows_under(status, new) >= 2 * len(made)

            retired = await asyncio.to_thread(run, "keys", "retire", old, env=env)
            assert retired.returncode == 0, retired.stderr
            after = await asyncio.to_thread(_status, env)
            assert next(k for k in after["keys"] if k["id"] == old)["state"] == "retired"
            for payment_id, note in made[:: max(1, len(made) // 10)]:  # still readable, old key gone
                got = await client.get(f"/api/payments/{payment_id}")
                assert got.status_code == 200 and got.json()["description"] == note
            # Both key operations are in the audit trail, as the operator who ran them.
            with psycopg.connect(conninfo(database_url)) as conn:
                audited = conn.execute(
                    "SELECT action, actor_type, changes FROM audit_entries WHERE object_type = 'encryption_key'"
                    " AND ((action = 'encryption_key.rotated' AND object_id = %s)"
                    " OR (action = 'encryption_key.retired' AND object_id = %s)) ORDER BY seq", [new, old]).fetchall()
            assert [(a, t) for a, t, _ in audited] == [("encryption_key.rotated", "operator"),
                                                       ("encryption_key.retired", "operator")], audited
            assert audited[0][2] == {"primary": [old, new]}
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_production_refuses_to_start_without_an_encryption_key(database_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in clean_env(DATABASE_URL=database_url, STRIPE_API_KEY="sk_live_not_a_real_key",
                                      PAYMENTD_DATA_DIR=str(tmp_path)).items()
           if k != "PAYMENTD_ENCRYPTION_KEYS"}
    refused = subprocess.run([PAYMENTD, "serve", "--port", str(free_port())], env=env, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2
    assert "PAYMENTD_ENCRYPTION_KEYS" in refused.stderr
    assert not (tmp_path / "encryption.keys").exists()  # nothing made up in its place
