"""The audit trail against the real app and database: one entry per audited action
with the right actor, nothing left by a rolled-back change, GET /api/audit's paging,
filters, scope and isolation, and the trail's append-only guard."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
import pytest

from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import Merchant, make_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def entries(client: httpx.AsyncClient, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    response = await client.get("/api/audit", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def only(found: list[dict], action: str) -> dict:
    matching = [e for e in found if e["action"] == action]
    assert len(matching) == 1, (action, [e["action"] for e in found])
    return matching[0]


async def key_id(database: Database, key: str) -> str:
    async with database.sql_connection() as conn:
        return str(await conn.fetchval("SELECT id FROM api_keys WHERE prefix = $1", key.split("_")[1]))


async def test_user_created_once_with_request_actor_ip_and_sealed_personal_data(
    merchant: Merchant, database: Database
) -> None:
    response = await merchant.client.post("/api/users", json={"email": "zoe@example.com", "name": "Zoe"})
    assert response.status_code == 201
    user_id = response.json()["id"]
    entry = only(await entries(merchant.client, object_id=user_id), "user.created")
    assert entry["actor"] == {"type": "api_key", "id": await key_id(database, merchant.key)}
    assert entry["object"] == {"type": "user", "id": user_id}
    assert entry["request_id"] == response.headers["paymentd-request-id"]  # the server id
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["changes"]["email"] == [None, "zoe@example.com"]  # shown to the account
    async with database.sql_connection() as conn:
        row = await conn.fetchrow("SELECT changes::text, personal_commitment FROM audit_entries WHERE seq = $1",
                                  entry["seq"])
    assert "zoe@example.com" not in row["changes"]  # never in the hashed, clear part
    assert row["personal_commitment"] is not None


async def test_payment_lifecycle_entries(merchant: Merchant) -> None:
    user = await merchant.user()
    created = await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": "12.00", "capture_method": "manual", "description": "Secret gift"})
    assert created.status_code == 201, created.text
    payment_id = created.json()["id"]
    confirmed = await merchant.client.post("/api/payments/confirm", json={
        "payment_id": payment_id, "payment_method": "pm_card_visa"})
    assert confirmed.json()["status"] == "requires_capture", confirmed.text
    captured = await merchant.client.post("/api/payments/capture", json={"payment_id": payment_id})
    assert captured.json()["status"] == "succeeded", captured.text
    refund = await merchant.client.post("/api/payments/refund", json={"payment_id": payment_id, "amount": "2.00"})
    assert refund.status_code == 201, refund.text

    found = await entries(merchant.client, object_id=payment_id)
    created_entry = only(found, "payment.created")
    assert created_entry["changes"]["description"] == [None, "Secret gift"]
    assert created_entry["changes"]["amount"] == [None, 1200]
    only(found, "payment.captured")
    moves = [tuple(e["changes"]["status"]) for e in found if e["action"] == "payment.status_changed"]
    assert sorted(moves) == sorted([("requires_payment_method", "requires_capture"),
                                    ("requires_capture", "succeeded"), ("succeeded", "partially_refunded")])
    refund_entries = await entries(merchant.client, object_id=refund.json()["id"])
    assert only(refund_entries, "refund.created")["changes"]["amount"] == [None, 200]
    assert only(refund_entries, "refund.status_changed")["changes"]["status"] == ["pending", "succeeded"]

    receipt = await merchant.client.get(f"/api/payments/{payment_id}/receipt")
    assert receipt.status_code == 200
    assert only(await entries(merchant.client, object_id=payment_id, action="receipt.issued"),
                "receipt.issued")["changes"]["receipt_number"][1] == \
        (await merchant.client.get(f"/api/payments/{payment_id}")).json()["receipt_number"]


async def test_personal_fields_without_a_value_are_not_sealed(merchant: Merchant, database: Database) -> None:
    """No description, metadata or receipt email: nothing personal to commit to or seal,
    and the entry still shows those fields as [null, null]; one set value is sealed."""
    user = await merchant.user()
    plain = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "3.00"})
    noted = await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": "3.00", "description": "Private note"})
    assert plain.status_code == noted.status_code == 201, (plain.text, noted.text)
    plain_entry = only(await entries(merchant.client, object_id=plain.json()["id"]), "payment.created")
    noted_entry = only(await entries(merchant.client, object_id=noted.json()["id"]), "payment.created")
    assert plain_entry["changes"]["description"] == [None, None]
    assert noted_entry["changes"]["description"] == [None, "Private note"]
    assert noted_entry["changes"]["receipt_email"] == [None, None]
    async with database.sql_connection() as conn:
        rows = {row["seq"]: row for row in await conn.fetch(
            "SELECT seq, changes::text, personal_commitment, personal FROM audit_entries WHERE seq = ANY($1)",
            [plain_entry["seq"], noted_entry["seq"]])}
    assert rows[plain_entry["seq"]]["personal_commitment"] is None and rows[plain_entry["seq"]]["personal"] is None
    assert rows[noted_entry["seq"]]["personal_commitment"] is not None
    assert "Private note" not in rows[noted_entry["seq"]]["changes"]
    assert "Private note" not in rows[noted_entry["seq"]]["personal"]


async def test_cancel_and_payment_methods(merchant: Merchant) -> None:
    user = await merchant.user()
    created = await merchant.client.post("/api/payments/create", json={"user_id": user["id"], "amount": "5.00"})
    payment_id = created.json()["id"]
    canceled = await merchant.client.post("/api/payments/cancel", json={"payment_id": payment_id})
    assert canceled.json()["status"] == "canceled", canceled.text
    found = await entries(merchant.client, object_id=payment_id)
    only(found, "payment.canceled")
    assert only(found, "payment.status_changed")["changes"]["status"] == ["requires_payment_method", "canceled"]

    saved = await merchant.client.post(f"/api/users/{user['id']}/payment-methods",
                                       json={"payment_method": "pm_card_visa"})
    assert saved.status_code == 201, saved.text
    pm = saved.json()["id"]
    removed = await merchant.client.delete(f"/api/users/{user['id']}/payment-methods/{pm}")
    assert removed.status_code == 200, removed.text
    found = await entries(merchant.client, action=["payment_method.saved", "payment_method.removed"])
    assert {e["action"] for e in found if e["object"]["id"] == pm} == {"payment_method.saved",
                                                                       "payment_method.removed"}
    assert len(found) == 2


async def test_a_change_that_fails_before_commit_leaves_neither_change_nor_entry(
    merchant: Merchant, database: Database, database_url: str
) -> None:
    """A temporary trigger fails the transaction on the audit row written after the
    user row: the request fails, and neither the user nor its entry exists."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"""
            CREATE FUNCTION fail_audit_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'forced failure'; END $$;
            CREATE TRIGGER fail_audit_for_test BEFORE INSERT ON audit_entries FOR EACH ROW
            WHEN (NEW.account_id = '{merchant.account_id}' AND NEW.action = 'user.created')
            EXECUTE FUNCTION fail_audit_for_test();
        """)
        response = await merchant.client.post("/api/users", json={"email": "gone@example.com", "name": "Gone"})
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "api_error"
    finally:
        await conn.execute("DROP TRIGGER fail_audit_for_test ON audit_entries; DROP FUNCTION fail_audit_for_test()")
        await conn.close()
    async with database.sql_connection() as db:
        assert await db.fetchval("SELECT count(*) FROM users WHERE account_id = $1", merchant.account_id) == 0
        assert await db.fetchval("SELECT count(*) FROM audit_entries WHERE account_id = $1 AND action = "
                                 "'user.created'", merchant.account_id) == 0


async def test_failed_access_is_counted_into_one_entry(merchant: Merchant, anonymous: httpx.AsyncClient,
                                                       database: Database, paymentd) -> None:  # type: ignore[no-untyped-def]
    from paymentd.audit import failures

    _, weak = await make_key(database, f"weak-{uuid.uuid4().hex[:8]}", [Scope.payments_read])
    async with database.sql_connection() as conn:
        account_of_weak = await conn.fetchval("SELECT account_id FROM api_keys WHERE prefix = $1",
                                              weak.split("_")[1])
    for _ in range(5):
        denied = await anonymous.get("/api/audit", headers={"Authorization": f"Bearer {weak}"})
        assert denied.status_code == 403
    prefix = uuid.uuid4().hex[:12]
    bogus = f"pd_{prefix}_" + "A" * 43
    for _ in range(3):
        assert (await anonymous.get("/api/audit", headers={"Authorization": f"Bearer {bogus}"})).status_code == 401
    await failures.flush(database)
    async with database.sql_connection() as conn:
        forbidden = await conn.fetch("SELECT * FROM audit_entries WHERE action = 'auth.failed' AND account_id = $1",
                                     account_of_weak)
        unknown = await conn.fetch("SELECT * FROM audit_entries WHERE action = 'auth.failed' AND object_id = $1",
                                   prefix)
    # One entry per group and flush (the server's own flusher may have taken part of them first).
    assert sum(r["count"] for r in forbidden) == 5 and len(forbidden) <= 2
    assert {(r["outcome"], r["object_id"], r["client_ip"]) for r in forbidden} == {
        ("forbidden", weak.split("_")[1], "127.0.0.1")}
    assert sum(r["count"] for r in unknown) == 3 and len(unknown) <= 2
    assert all(r["outcome"] == "unauthenticated" and r["account_id"] is None for r in unknown)


async def test_audit_api_scope_isolation_paging_and_filters(merchant: Merchant, database: Database,
                                                            anonymous: httpx.AsyncClient) -> None:
    _, weak = await make_key(database, f"weak-{uuid.uuid4().hex[:8]}", [Scope.payments_read])
    denied = await anonymous.get("/api/audit", headers={"Authorization": f"Bearer {weak}"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "missing_scope"

    users = [(await merchant.client.post("/api/users", json={"email": f"u{i}@example.com", "name": "U"})).json()["id"]
             for i in range(5)]
    seen: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 2, "action": "user.created", **({"cursor": cursor} if cursor else {})}
        page = (await merchant.client.get("/api/audit", params=params)).json()
        seen += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
        # A new entry while paging lands before the cursor: pages neither repeat nor skip.
        await merchant.client.post("/api/users", json={"email": "late@example.com", "name": "Late"})
    seqs = [e["seq"] for e in seen]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert set(users) <= {e["object"]["id"] for e in seen}

    key = await key_id(database, merchant.key)
    assert all(e["actor"]["id"] == key for e in await entries(merchant.client, actor=f"api_key:{key}"))
    assert await entries(merchant.client, actor="reconciler", action="user.created") == []
    assert await entries(merchant.client, created_gte="2999-01-01T00:00:00Z") == []

    other_account, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    other = (await anonymous.get("/api/audit", params={"object_id": users[0]},
                                 headers={"Authorization": f"Bearer {other_key}"})).json()
    assert other["data"] == []  # another account's entries are simply absent

    for bad in ({"cursor": "garbage!"}, {"cursor": "eyJzZXEiOiAieCJ9"}, {"actor": "wizard"}, {"limit": 0},
                {"limit": 101}, {"created_gte": "10000-01-01T00:00:00Z"}, {"created_lt": "not a date"}):
        response = await merchant.client.get("/api/audit", params=bad)
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_the_app_role_cannot_change_or_delete_entries(merchant: Merchant, database_url: str) -> None:
    await merchant.user()
    conn = await asyncpg.connect(database_url)  # the role the app connects as
    try:
        for statement in ("UPDATE audit_entries SET action = 'x' WHERE account_id = $1",
                          "DELETE FROM audit_entries WHERE account_id = $1"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement, merchant.account_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE audit_entries")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE audit_checkpoints")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE audit_chains SET length = 0")
    finally:
        await conn.close()


async def test_a_role_granted_as_the_readme_says_cannot_even_try(merchant: Merchant, database_url: str) -> None:
    """The README's least-privilege role: INSERT and SELECT on the trail, UPDATE of `personal` only."""
    await merchant.user()
    role = f"paymentd_app_{uuid.uuid4().hex[:8]}"
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(f"""
            CREATE ROLE {role} LOGIN;
            GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
            REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints FROM {role};
            REVOKE DELETE, TRUNCATE ON audit_chains FROM {role};
            GRANT UPDATE (personal) ON audit_entries TO {role};
        """)
        app = await asyncpg.connect(database_url, user=role)
        try:
            assert await app.fetchval("SELECT count(*) FROM audit_entries WHERE account_id = $1",
                                      merchant.account_id) > 0
            for statement in ("UPDATE audit_entries SET action = 'x' WHERE account_id = $1",
                              "DELETE FROM audit_entries WHERE account_id = $1"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
                    await app.execute(statement, merchant.account_id)
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute("SET session_replication_role = replica")  # superusers only
        finally:
            await app.close()
    finally:
        await owner.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        await owner.close()
