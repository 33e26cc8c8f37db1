"""The dashboard's sessions and forms over plain HTTP: sign-in, cookies, CSRF, expiry,
revocation, scopes, failed-auth throttling, headers."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from paymentd.app import create_app
from paymentd.audit import failures as audit_failures
from paymentd.auth import service as auth_service
from paymentd.auth.keys import Scope
from paymentd.config import Settings
from paymentd.db import Database
from tests.conftest import make_key
from tests.dashboard.conftest import Shopper, csrf_of, signed_in
from tests.support.servers import ThreadedServer


async def audit_actions(database: Database, account_id: uuid.UUID, action: str) -> list[dict]:
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT actor_type, actor_id, object_id, changes, outcome FROM audit_entries"
                                " WHERE account_id = $1 AND action = $2 ORDER BY seq", str(account_id), action)
    return [dict(r) for r in rows]


async def sessions_of(database: Database, account_id: uuid.UUID) -> int:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM dashboard_sessions WHERE account_id = $1", account_id)


async def test_signed_out_pages_send_to_sign_in(anonymous: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/dashboard/payments", "/dashboard/keys", f"/dashboard/payments/{uuid.uuid4()}"):
        response = await anonymous.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"/dashboard/login?next={path}"
    posted = await anonymous.post(f"/dashboard/payments/{uuid.uuid4()}/refund", data={"csrf": "x"})
    assert posted.status_code == 303 and posted.headers["location"] == "/dashboard/login"


async def test_sign_in_opens_an_audited_session_with_a_strict_cookie(shopper: Shopper, paymentd,
                                                                    database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        cookie = next(v for k, v in client.cookies.items() if k == "paymentd_dashboard")
        assert shopper.key not in cookie and len(cookie) >= 40
        page = await client.get("/dashboard")
        assert page.status_code == 200 and "Overview" in page.text
        csp = page.headers["content-security-policy"]
        for part in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'", "script-src 'self'"):
            assert part in csp
        assert "unsafe-inline" not in csp and "http" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
    entries = await audit_actions(database, shopper.account_id, "dashboard.signed_in")
    assert len(entries) == 1 and entries[0]["actor_type"] == "api_key"
    assert await sessions_of(database, shopper.account_id) == 1
    # The row keeps a hash of the cookie's token, never the token or the key.
    async with database.sql_connection() as conn:
        stored = await conn.fetchval("SELECT token_hash FROM dashboard_sessions WHERE account_id = $1",
                                     shopper.account_id)
    assert stored != cookie and len(stored) == 64


async def test_cookie_flags_plain_and_under_tls(shopper: Shopper, paymentd) -> None:
    async with httpx.AsyncClient(base_url=paymentd.url) as client:
        login = await client.get("/dashboard/login")
        response = await client.post("/dashboard/login", data={"csrf": csrf_of(login.text), "key": shopper.key})
        set_cookie = response.headers["set-cookie"].lower()
        assert "paymentd_dashboard=" in set_cookie and "httponly" in set_cookie
        assert "samesite=strict" in set_cookie and "path=/dashboard" in set_cookie and "secure" not in set_cookie
    # Behind a trusted proxy that says the request came over TLS (uvicorn believes 127.0.0.1).
    tls = {"X-Forwarded-Proto": "https"}
    async with httpx.AsyncClient(base_url=paymentd.url, headers=tls) as client:
        login = await client.get("/dashboard/login")
        token = login.cookies.get("__Host-paymentd_dashboard_login")
        assert token
        response = await client.post("/dashboard/login", data={"csrf": csrf_of(login.text), "key": shopper.key},
                                     cookies={"__Host-paymentd_dashboard_login": token})
        assert response.status_code == 303, response.text
        cookies = [c.lower() for c in response.headers.get_list("set-cookie")]
        session = next(c for c in cookies if c.startswith("__host-paymentd_dashboard="))
        assert "secure" in session and "path=/;" in session + ";" and "httponly" in session
        assert "samesite=strict" in session and "domain" not in session
        assert "strict-transport-security" in response.headers


async def test_sign_in_refuses_a_forged_form(shopper: Shopper, anonymous: httpx.AsyncClient,
                                            database: Database) -> None:
    # No login cookie (another site posting the form): refused before the key is looked at.
    response = await anonymous.post("/dashboard/login", data={"csrf": "forged", "key": shopper.key})
    assert response.status_code == 403 and "csrf_failed" in response.text
    assert await sessions_of(database, shopper.account_id) == 0


async def test_csrf_token_is_checked_on_every_post(shopper: Shopper, paymentd, database: Database) -> None:
    user = await shopper.user()
    paid = await shopper.payment(user, "10.00")
    async with signed_in(paymentd.url, shopper.key) as client:
        page = await client.get(f"/dashboard/payments/{paid['id']}")
        good = csrf_of(page.text)
        for fields in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": good + "x"}):
            response = await client.post(f"/dashboard/payments/{paid['id']}/refund", data={"amount": "1.00", **fields})
            assert response.status_code == 403 and "csrf_failed" in response.text, fields
        # Another session's token does not fit this session.
        async with signed_in(paymentd.url, shopper.key) as other:
            theirs = csrf_of((await other.get("/dashboard")).text)
        response = await client.post(f"/dashboard/payments/{paid['id']}/refund", data={"amount": "1.00", "csrf": theirs})
        assert response.status_code == 403
        for path in (f"/dashboard/payments/{paid['id']}/capture", f"/dashboard/payments/{paid['id']}/cancel",
                     "/dashboard/logout", f"/dashboard/keys/{uuid.uuid4()}/revoke"):
            assert (await client.post(path, data={"csrf": "wrong"})).status_code == 403, path
        async with database.sql_connection() as conn:
            assert await conn.fetchval("SELECT count(*) FROM refunds WHERE payment_id = $1",
                                       uuid.UUID(paid["id"])) == 0
        # The right token works.
        response = await client.post(f"/dashboard/payments/{paid['id']}/refund", data={"amount": "1.00", "csrf": good})
        assert response.status_code == 303, response.text


async def test_bad_form_bodies_are_clear_errors(shopper: Shopper, paymentd) -> None:
    user = await shopper.user()
    paid = await shopper.payment(user, "10.00")
    async with signed_in(paymentd.url, shopper.key) as client:
        csrf = csrf_of((await client.get(f"/dashboard/payments/{paid['id']}")).text)
        path = f"/dashboard/payments/{paid['id']}/refund"
        as_json = await client.post(path, json={"csrf": csrf})
        assert as_json.status_code == 400 and "invalid_form" in as_json.text
        twice = await client.post(path, content=f"csrf={csrf}&csrf={csrf}",
                                  headers={"content-type": "application/x-www-form-urlencoded"})
        assert twice.status_code == 400 and "sent twice" in twice.text
        for amount, code in (("abc", "400"), ("-1", "400"), ("10.001", "400"), ("99.00", "409")):
            response = await client.post(path, data={"csrf": csrf, "amount": amount})
            assert response.status_code == int(code), (amount, response.status_code)
            assert 'data-testid="error"' in response.text
        bad_reason = await client.post(path, data={"csrf": csrf, "reason": "because"})
        assert bad_reason.status_code == 400
        unknown = await client.get(f"/dashboard/payments/{uuid.uuid4()}")
        assert unknown.status_code == 404 and "No such payment" in unknown.text
        not_an_id = await client.get("/dashboard/payments/not-an-id")
        assert not_an_id.status_code == 404
        bad_search = await client.get("/dashboard/payments", params={"q": "some words"})
        assert bad_search.status_code == 400 and "not searched" in bad_search.text
        bad_date = await client.get("/dashboard/payments", params={"date_from": "yesterday"})
        assert bad_date.status_code == 400
        bad_status = await client.get("/dashboard/payments", params={"status": "paid"})
        assert bad_status.status_code == 400
        bad_cursor = await client.get("/dashboard/payments", params={"cursor": "!!"})
        assert bad_cursor.status_code == 400
        bad_days = await client.get("/dashboard", params={"days": "1000"})
        assert bad_days.status_code == 400
    refunds = (await shopper.api.get(f"/api/payments/{paid['id']}")).json()["refunds"]
    assert refunds == []


async def test_another_accounts_payment_is_not_found(shopper: Shopper, paymentd, database: Database) -> None:
    user = await shopper.user()
    paid = await shopper.payment(user, "10.00")
    _, other_key = await make_key(database, f"dash-other-{uuid.uuid4().hex[:6]}", [Scope.dashboard, Scope.admin])
    async with signed_in(paymentd.url, other_key) as client:
        page = await client.get(f"/dashboard/payments/{paid['id']}")
        assert page.status_code == 404
        csrf = csrf_of((await client.get("/dashboard")).text)
        refund = await client.post(f"/dashboard/payments/{paid['id']}/refund", data={"csrf": csrf})
        assert refund.status_code == 404
        found = await client.get("/dashboard/payments", params={"q": paid["id"]})
        assert found.status_code == 200 and "No payments match." in found.text
        # Nor can its keys be revoked from here.
        async with database.sql_connection() as conn:
            key_id = await conn.fetchval("SELECT id FROM api_keys WHERE account_id = $1", shopper.account_id)
        revoke = await client.post(f"/dashboard/keys/{key_id}/revoke", data={"csrf": csrf})
        assert revoke.status_code == 404


async def test_idle_sessions_end(shopper: Shopper, paymentd, database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        async with database.sql_connection() as conn:
            await conn.execute("UPDATE dashboard_sessions SET last_seen_at = clock_timestamp() - interval '31 minutes'"
                               " WHERE account_id = $1", shopper.account_id)
        response = await client.get("/dashboard/payments")
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard/login?next=/dashboard/payments&reason=idle"
        again = await client.get("/dashboard")
        assert again.status_code == 303 and "reason" not in again.headers["location"]
    assert await sessions_of(database, shopper.account_id) == 0
    ended = await audit_actions(database, shopper.account_id, "dashboard.signed_out")
    assert [e["actor_type"] for e in ended] == ["system"] and ended[0]["changes"]["reason"] == [None, "idle"]


async def test_sessions_have_a_maximum_age(shopper: Shopper, paymentd, database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        async with database.sql_connection() as conn:
            await conn.execute("UPDATE dashboard_sessions SET created_at = clock_timestamp() - interval '13 hours'"
                               " WHERE account_id = $1", shopper.account_id)
        response = await client.get("/dashboard")
        assert response.status_code == 303 and response.headers["location"].endswith("reason=expired")


async def test_a_revoked_key_ends_its_sessions(shopper: Shopper, paymentd, database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        assert (await client.get("/dashboard")).status_code == 200
        async with database.transaction() as session:
            assert await auth_service.revoke_key(session, shopper.key) is not None
        response = await client.get("/dashboard")
        assert response.status_code == 303 and response.headers["location"].endswith("reason=key_revoked")
    assert await sessions_of(database, shopper.account_id) == 0


async def test_sign_out_ends_the_session(shopper: Shopper, paymentd, database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        csrf = csrf_of((await client.get("/dashboard")).text)
        old_cookie = client.cookies.get("paymentd_dashboard")
        response = await client.post("/dashboard/logout", data={"csrf": csrf})
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/login?reason=signed_out"
        # The old cookie names nothing now, even if a browser kept it.
        client.cookies.set("paymentd_dashboard", old_cookie)
        replay = await client.get("/dashboard")
        assert replay.status_code == 303
    ended = await audit_actions(database, shopper.account_id, "dashboard.signed_out")
    assert [e["actor_type"] for e in ended] == ["api_key"]


async def test_a_key_without_the_scope_is_refused(paymentd, database: Database) -> None:
    account = f"dash-noscope-{uuid.uuid4().hex[:6]}"
    account_id, key = await make_key(database, account, [Scope.payments_read, Scope.payments_write])
    async with httpx.AsyncClient(base_url=paymentd.url) as client:
        login = await client.get("/dashboard/login")
        response = await client.post("/dashboard/login", data={"csrf": csrf_of(login.text), "key": key})
        assert response.status_code == 403 and "lacks the `dashboard` scope" in response.text
        assert "paymentd_dashboard=" not in response.headers.get("set-cookie", "")
    assert await sessions_of(database, account_id) == 0
    await audit_failures.flush(database)
    failed = await audit_actions(database, account_id, "auth.failed")
    assert failed and failed[0]["outcome"] == "forbidden"


async def test_admin_keys_may_sign_in(paymentd, database: Database) -> None:
    _, key = await make_key(database, f"dash-admin-{uuid.uuid4().hex[:6]}", [Scope.admin])
    async with signed_in(paymentd.url, key) as client:
        assert (await client.get("/dashboard")).status_code == 200


async def test_dashboard_scope_alone_looks_but_does_not_act(shopper: Shopper, paymentd, database: Database) -> None:
    user = await shopper.user()
    paid = await shopper.payment(user, "10.00")
    _, viewer = await make_key(database, shopper.account, [Scope.dashboard])
    async with signed_in(paymentd.url, viewer) as client:
        page = await client.get(f"/dashboard/payments/{paid['id']}")
        assert page.status_code == 200
        response = await client.post(f"/dashboard/payments/{paid['id']}/refund", data={"csrf": csrf_of(page.text)})
        assert response.status_code == 403 and "refunds:write" in response.text
        keys = await client.get("/dashboard/keys")
        assert "Revoke</button>" not in keys.text
    async with database.sql_connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM refunds WHERE payment_id = $1", uuid.UUID(paid["id"])) == 0


async def test_wrong_keys_are_throttled_like_the_api(database_url: str, sim, database: Database) -> None:
    settings = Settings(database_url=database_url, stripe_api_base=sim.url, run_worker=False, log_level="WARNING",
                        auth_fail_limit=3, auth_fail_window_s=60)
    server = ThreadedServer(create_app(settings)).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            statuses = []
            for attempt in range(4):
                login = await client.get("/dashboard/login")
                response = await client.post("/dashboard/login", data={
                    "csrf": csrf_of(login.text), "key": f"pd_aaaaaaaaaaa{attempt}_" + "x" * 43})
                statuses.append(response.status_code)
            assert statuses == [401, 401, 401, 429]
            assert int(response.headers["retry-after"]) >= 1
            # The API is blocked for this address too: one throttle.
            api = await client.get("/api/payments/history", headers={"Authorization": "Bearer pd_bbbbbbbbbbbb_" + "y" * 43})
            assert api.status_code == 429
    finally:
        server.stop()


async def test_sign_in_redirects_only_inside_the_dashboard(shopper: Shopper, paymentd) -> None:
    async with httpx.AsyncClient(base_url=paymentd.url) as client:
        for wanted, landed in (("/dashboard/keys", "/dashboard/keys"), ("https://evil.example/", "/dashboard"),
                               ("//evil.example/dashboard", "/dashboard"), ("/dashboard/../api", "/dashboard")):
            login = await client.get("/dashboard/login", params={"next": wanted})
            response = await client.post("/dashboard/login", data={
                "csrf": csrf_of(login.text), "key": shopper.key, "next": wanted})
            assert response.headers["location"] == landed, wanted


async def test_dashboard_requests_count_toward_the_accounts_limit(shopper: Shopper, paymentd,
                                                                 database: Database) -> None:
    async with signed_in(paymentd.url, shopper.key) as client:
        async with database.transaction() as session:
            await auth_service.set_rate_limit(session, shopper.account, 1)
        statuses = [(await client.get("/dashboard/keys")).status_code for _ in range(4)]
        assert statuses[0] == 200 and 429 in statuses


async def test_the_payments_list_pages_without_repeats(shopper: Shopper, paymentd) -> None:
    import re

    user = await shopper.user()
    made = {(await shopper.payment(user, f"{n + 1}.00", None))["id"] for n in range(27)}
    async with signed_in(paymentd.url, shopper.key) as client:
        first = await client.get("/dashboard/payments")
        ids = re.findall(r'href="/dashboard/payments/([0-9a-f-]{36})"', first.text)
        assert len(ids) == 25
        older = re.search(r'rel="next" href="([^"]+)"', first.text)
        assert older
        second = await client.get(older.group(1).replace("&amp;", "&"))
        more = re.findall(r'href="/dashboard/payments/([0-9a-f-]{36})"', second.text)
        assert len(more) == 2 and 'rel="next"' not in second.text
        assert set(ids) | set(more) == made and not set(ids) & set(more)
