"""The audit trail's tamper evidence, end to end: 8 writers in 2 processes append
1,000 entries without forking a chain; `paymentd audit verify` passes, then catches
an altered entry, a deleted entry and a cut-back tail (head row fixed up too); an
export verifies with only the public key, and a tampered one does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.databases import admin_url, fresh_database

KEY = "11" * 32  # a fixed Ed25519 private key (hex) for the CLI
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with admin_url(tmp_path_factory.mktemp("pg")) as admin, fresh_database(admin) as database:
        yield database


def cli(url: str, *args: str, tmp: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "PAYMENTD_AUDIT_SIGNING_KEY": KEY, "PAYMENTD_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "paymentd.cli", "audit", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp or ROOT)


def superuser(url: str, statement: str, *params: object) -> list[tuple]:
    """As superuser with triggers bypassed: the only way around the append-only guard."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def written(url: str) -> str:
    processes = [subprocess.Popen([sys.executable, "-m", "tests.support.audit_writers", url, "4", "500"], cwd=ROOT)
                 for _ in range(2)]
    assert [p.wait(timeout=300) for p in processes] == [0, 0]
    return url


def test_concurrent_writers_never_fork_a_chain(written: str) -> None:
    rows = superuser(written, "SELECT count(*), count(DISTINCT chain) FROM audit_entries WHERE action = 'test.written'")
    assert rows[0][0] == 1000
    assert rows[0][1] > 1  # spread over several chains
    assert cli(written, "checkpoint").returncode == 0
    result = cli(written, "verify")
    assert result.returncode == 0, result.stderr
    assert "audit trail verifies" in result.stdout


def test_export_verifies_with_only_the_public_key_and_tampering_shows(written: str, tmp_path: Path) -> None:
    public = cli(written, "public-key").stdout.strip()
    out = tmp_path / "export.jsonl"
    result = cli(written, "export", "--from", "2000-01-01T00:00:00", "--to", "2999-01-01T00:00:00", "--out", str(out))
    assert result.returncode == 0, result.stderr
    script = [sys.executable, str(ROOT / "scripts" / "verify_audit_export.py")]
    checked = subprocess.run([*script, str(out), "--public-key", public], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    lines = out.read_text().splitlines()
    assert "w0@example.com" not in out.read_text()  # personal data stays out of exports
    index = next(i for i, line in enumerate(lines) if '"type":"entry"' in line)
    entry = json.loads(lines[index])
    entry["body"]["object_id"] = "someone-else"
    lines[index] = json.dumps(entry)
    out.write_text("\n".join(lines) + "\n")
    tampered = subprocess.run([*script, str(out), "--public-key", public], capture_output=True, text=True)
    assert tampered.returncode == 1
    assert "do not match its hash" in tampered.stderr
    other_key = subprocess.run([*script, str(out), "--public-key", "22" * 32], capture_output=True, text=True)
    assert other_key.returncode == 1


def test_verify_names_an_altered_entry(written: str) -> None:
    seq, changes = superuser(written, "SELECT seq, changes::text FROM audit_entries ORDER BY seq LIMIT 1 OFFSET 500")[0]
    superuser(written, "UPDATE audit_entries SET changes = '{\"n\": [null, 99]}' WHERE seq = %s", seq)
    try:
        result = cli(written, "verify")
        assert result.returncode == 1
        assert f"entry seq={seq} " in result.stderr and "do not match its hash" in result.stderr
    finally:
        superuser(written, "UPDATE audit_entries SET changes = %s::jsonb WHERE seq = %s", changes, seq)
    assert cli(written, "verify").returncode == 0


def test_verify_names_a_deleted_entry(written: str) -> None:
    seq, chain, chain_seq = superuser(written, "SELECT seq, chain, chain_seq FROM audit_entries ORDER BY seq "
                                               "LIMIT 1 OFFSET 300")[0]
    superuser(written, "CREATE TABLE deleted_for_test AS SELECT * FROM audit_entries WHERE seq = %s", seq)
    superuser(written, "DELETE FROM audit_entries WHERE seq = %s", seq)
    try:
        result = cli(written, "verify")
        assert result.returncode == 1
        assert f"chain {chain}: entry #{chain_seq} is missing" in result.stderr
    finally:
        superuser(written, "INSERT INTO audit_entries OVERRIDING SYSTEM VALUE SELECT * FROM deleted_for_test")
        superuser(written, "DROP TABLE deleted_for_test")
    assert cli(written, "verify").returncode == 0


def test_verify_catches_a_cut_back_tail_with_the_head_fixed_up(url: str) -> None:
    """Run last in the module (the trail is broken beyond repair afterwards)."""
    chain, length = superuser(url, "SELECT chain, length FROM audit_chains WHERE length > 2 "
                                   "ORDER BY length DESC LIMIT 1")[0]
    assert cli(url, "checkpoint").returncode == 0  # a checkpoint signs the current heads
    superuser(url, "DELETE FROM audit_entries WHERE chain = %s AND chain_seq = %s", chain, length)
    previous = superuser(url, "SELECT hash FROM audit_entries WHERE chain = %s AND chain_seq = %s", chain, length - 1)
    superuser(url, "UPDATE audit_chains SET length = %s, head_hash = %s WHERE chain = %s", length - 1,
              previous[0][0], chain)
    result = cli(url, "verify")
    assert result.returncode == 1
    assert "checkpoint" in result.stderr and f"chain {chain} #{length}" in result.stderr
