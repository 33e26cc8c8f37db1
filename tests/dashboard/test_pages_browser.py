"""The dashboard in headless Chromium: every page renders with no console error (a CSP
violation is one) and no request to another host; the overview's numbers equal the
database's after a known workload; the forms work; screenshots of each page are saved
in tests/dashboard/screenshots/ for people to look at."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import make_key
from tests.dashboard.conftest import Shopper, Watched

DECLINE = "pm_card_chargeDeclinedInsufficientFunds"
SUCCEEDED = ("succeeded", "partially_refunded", "refunded", "disputed")


async def text_of(watched: Watched, testid: str) -> str:
    return (await watched.page.inner_text(f"[data-testid={testid}]")).strip()  # type: ignore[attr-defined]


async def workload(shopper: Shopper) -> dict[str, dict]:
    """A known mix: charged, declined then charged, declined, held for capture, never
    confirmed, refunded in part, in two currencies."""
    ann = await shopper.user("ann@example.com")
    bob = await shopper.user("bob@example.com")
    made = {
        "charged": await shopper.payment(ann, "10.00", description="a mug"),
        "declined_once": await shopper.payment(ann, "20.00", DECLINE, expect=402),
        "declined": await shopper.payment(bob, "5.00", DECLINE, expect=402),
        "held": await shopper.payment(bob, "7.50", capture_method="manual"),
        "open": await shopper.payment(ann, "3.00", None),
        "euro": await shopper.payment(bob, "30.00", currency="eur"),
    }
    again = await shopper.api.post("/api/payments/confirm", headers={"Prefer": "wait=10"},
                                   json={"payment_id": made["declined_once"]["id"], "payment_method": "pm_card_visa"})
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    refund = await shopper.api.post("/api/payments/refund", headers={"Prefer": "wait=10"},
                                    json={"payment_id": made["euro"]["id"], "amount": "12.50"})
    assert refund.status_code == 201, refund.text
    assert made["held"]["status"] == "requires_capture"
    return made


async def expected(database: Database, account_id: uuid.UUID) -> dict:
    """The overview's figures, computed here straight from the tables."""
    since = datetime.now(UTC) - timedelta(days=30)
    async with database.sql_connection() as conn:
        payments = await conn.fetch("SELECT status, attempt_count FROM payments WHERE account_id = $1"
                                    " AND created_at >= $2", account_id, since)
        declines = await conn.fetch(
            "SELECT coalesce(a.decline_code, a.error_code, 'unknown') AS reason FROM payment_attempts a"
            " JOIN payments p ON p.id = a.payment_id WHERE p.account_id = $1 AND a.outcome = 'failed'", account_id)
        refunds = await conn.fetchval("SELECT count(*) FROM refunds r JOIN payments p ON p.id = r.payment_id"
                                      " WHERE p.account_id = $1 AND r.status IN ('pending', 'requires_action',"
                                      " 'succeeded')", account_id)
        jobs = {r["status"]: r["n"] for r in await conn.fetch(
            "SELECT status::text, count(*) AS n FROM procrastinate_jobs GROUP BY status")}
    attempted = sum(1 for p in payments if p["attempt_count"] > 0)
    succeeded = sum(1 for p in payments if p["status"] in SUCCEEDED)
    return {
        "payments": str(len(payments)), "attempted": str(attempted), "succeeded": str(succeeded),
        "success-rate": f"{100 * succeeded / attempted:.2f}%", "refunds": str(refunds),
        "declines": Counter(r["reason"] for r in declines),
        "jobs-todo": str(jobs.get("todo", 0)), "jobs-failed": str(jobs.get("failed", 0)),
    }


async def test_every_page_renders_offline_and_shows_the_databases_numbers(
        shopper: Shopper, watched: Watched, database: Database) -> None:
    made = await workload(shopper)
    page = watched.page
    await watched.shot("login")
    await watched.sign_in(shopper.key)

    # Overview: each figure equals the database's.
    want = await expected(database, shopper.account_id)
    for testid in ("payments", "attempted", "succeeded", "success-rate", "refunds", "jobs-todo", "jobs-failed"):
        assert await text_of(watched, testid) == want[testid], testid
    assert want["payments"] == "6" and want["succeeded"] == "3"
    shown = {}
    for row in await page.query_selector_all("[data-testid=declines] tbody tr"):  # type: ignore[attr-defined]
        reason, count = [c.strip() for c in (await row.inner_text()).split("\t")]
        shown[reason] = int(count)
    assert shown == dict(want["declines"]) == {"insufficient_funds": 2}
    volume = await text_of(watched, "volume")
    assert "USD" in volume and "45.50" in volume and "EUR" in volume and "30.00" in volume
    assert await text_of(watched, "circuit") == "closed"
    assert await page.locator("svg.chart rect.bar-ok").count() >= 1  # type: ignore[attr-defined]
    await watched.shot("overview")
    await page.goto(f"{watched.origin}/dashboard?days=7")  # type: ignore[attr-defined]
    assert await text_of(watched, "payments") == "6"

    # Payments: the list, search by email (blind index), by id, by PaymentIntent, filters.
    await page.goto(f"{watched.origin}/dashboard/payments")  # type: ignore[attr-defined]
    assert await page.locator("[data-testid=payments-list] tbody tr").count() == 6  # type: ignore[attr-defined]
    await watched.shot("payments")
    await page.fill("input[name=q]", "BOB@example.com")  # type: ignore[attr-defined]
    await page.click("form.filters button")  # type: ignore[attr-defined]
    assert await page.locator("[data-testid=payments-list] tbody tr").count() == 3  # type: ignore[attr-defined]
    await page.goto(f"{watched.origin}/dashboard/payments?status=requires_capture")  # type: ignore[attr-defined]
    rows = page.locator("[data-testid=payments-list] tbody tr")  # type: ignore[attr-defined]
    assert await rows.count() == 1 and "7.50" in await rows.inner_text()
    today = datetime.now(UTC).date()
    await page.goto(f"{watched.origin}/dashboard/payments?date_from={today - timedelta(days=1)}"  # type: ignore[attr-defined]
                    f"&date_to={today - timedelta(days=1)}")
    assert "No payments match." in await page.inner_text("[data-testid=payments-list]")  # type: ignore[attr-defined]
    await page.goto(f"{watched.origin}/dashboard/payments?q={made['euro']['stripe_payment_intent_id']}")  # type: ignore[attr-defined]
    assert page.url.endswith(f"/dashboard/payments/{made['euro']['id']}")  # type: ignore[attr-defined]

    # A payment's page: status moves with their source, the refund, audit entries.
    timeline = await text_of(watched, "timeline")
    assert "created as requires_payment_method" in timeline or "created as requires_confirmation" in timeline
    assert "succeeded" in timeline and "refund 12.50 eur: succeeded" in timeline
    assert "payment.created" in timeline and "refund.created" in timeline
    assert await text_of(watched, "refunded") == "12.50"
    await watched.shot("payment")
    await page.goto(f"{watched.origin}/dashboard/payments/{made['declined_once']['id']}")  # type: ignore[attr-defined]
    timeline = await text_of(watched, "timeline")
    assert "attempt 1: failed" in timeline and "insufficient_funds" in timeline and "attempt 2: succeeded" in timeline
    await watched.shot("payment-declined-then-paid")

    # API keys.
    await page.goto(f"{watched.origin}/dashboard/keys")  # type: ignore[attr-defined]
    assert shopper.key.split("_")[1] in await text_of(watched, "keys")
    await watched.shot("keys")


async def test_docs_render_offline(watched: Watched) -> None:
    page = watched.page
    await page.goto(f"{watched.origin}/docs")  # type: ignore[attr-defined]
    await page.wait_for_selector(".swagger-ui .info .title")  # type: ignore[attr-defined]
    assert "paymentd" in await page.inner_text(".swagger-ui .info .title")  # type: ignore[attr-defined]
    await page.wait_for_selector(".opblock-tag")  # type: ignore[attr-defined]
    assert any(url.endswith("/openapi.json") for url in watched.requests)
    await watched.shot("docs")


async def test_forms_capture_cancel_refund_revoke_and_sign_out(
        shopper: Shopper, watched: Watched, database: Database) -> None:
    ann = await shopper.user()
    to_capture = await shopper.payment(ann, "8.00", capture_method="manual")
    to_cancel = await shopper.payment(ann, "9.00", capture_method="manual")
    to_refund = await shopper.payment(ann, "10.00")
    spare_id, _ = None, None
    async with database.transaction() as session:
        from paymentd.auth import service as auth_service

        spare, _ = await auth_service.create_key(session, shopper.account, [Scope.payments_read], name="spare")
        spare_id = spare.id
    key_id = await _key_id(database, shopper.key)
    page = watched.page
    await watched.sign_in(shopper.key)

    await page.goto(f"{watched.origin}/dashboard/payments/{to_capture['id']}")  # type: ignore[attr-defined]
    await watched.shot("payment-requires-capture")
    await page.fill("[data-testid=capture-form] input[name=amount]", "6.00")  # type: ignore[attr-defined]
    await page.click("[data-testid=capture-form] button")  # type: ignore[attr-defined]
    await page.wait_for_selector("[data-testid=notice]")  # type: ignore[attr-defined]
    assert await text_of(watched, "status") == "succeeded"

    await page.goto(f"{watched.origin}/dashboard/payments/{to_cancel['id']}")  # type: ignore[attr-defined]
    await page.select_option("[data-testid=cancel-form] select[name=reason]", "abandoned")  # type: ignore[attr-defined]
    await page.click("[data-testid=cancel-form] button")  # type: ignore[attr-defined]
    await page.wait_for_selector("[data-testid=notice]")  # type: ignore[attr-defined]
    assert await text_of(watched, "status") == "canceled"

    await page.goto(f"{watched.origin}/dashboard/payments/{to_refund['id']}")  # type: ignore[attr-defined]
    # A bad amount: a clear error on the page, nothing written.
    watched.allowed.append("status of 400")
    await page.fill("[data-testid=refund-form] input[name=amount]", "1.234")  # type: ignore[attr-defined]
    await page.click("[data-testid=refund-form] button")  # type: ignore[attr-defined]
    assert "amount" in await text_of(watched, "error")
    await watched.shot("payment-refund-error")
    await page.fill("[data-testid=refund-form] input[name=amount]", "4.00")  # type: ignore[attr-defined]
    await page.select_option("[data-testid=refund-form] select[name=reason]", "requested_by_customer")  # type: ignore[attr-defined]
    await page.click("[data-testid=refund-form] button")  # type: ignore[attr-defined]
    await page.wait_for_selector("[data-testid=notice]")  # type: ignore[attr-defined]
    assert await text_of(watched, "refunded") == "4.00"
    assert await text_of(watched, "status") == "partially_refunded"

    async with database.sql_connection() as conn:
        captured = await conn.fetchrow("SELECT status, amount_received FROM payments WHERE id = $1",
                                       uuid.UUID(to_capture["id"]))
        assert dict(captured) == {"status": "succeeded", "amount_received": 600}
        assert await conn.fetchval("SELECT status FROM payments WHERE id = $1", uuid.UUID(to_cancel["id"])) == "canceled"
        refunds = await conn.fetch("SELECT amount, reason FROM refunds WHERE payment_id = $1", uuid.UUID(to_refund["id"]))
        assert [dict(r) for r in refunds] == [{"amount": 400, "reason": "requested_by_customer"}]
        # The same audit entries as the API's, by the signed-in key.
        actors = await conn.fetch(
            "SELECT action, actor_type, actor_id FROM audit_entries WHERE account_id = $1 AND action = ANY($2)",
            str(shopper.account_id), ["payment.captured", "payment.canceled", "refund.created"])
        assert sorted(a["action"] for a in actors) == ["payment.canceled", "payment.captured", "refund.created"]
        assert {(a["actor_type"], a["actor_id"]) for a in actors} == {("api_key", str(key_id))}

    # API keys: revoke the spare one.
    await page.goto(f"{watched.origin}/dashboard/keys")  # type: ignore[attr-defined]
    await page.click(f"tr[data-key='{spare_id}'] button")  # type: ignore[attr-defined]
    await page.wait_for_selector("[data-testid=notice]")  # type: ignore[attr-defined]
    assert "revoked" in await page.inner_text(f"tr[data-key='{spare_id}'] td.state")  # type: ignore[attr-defined]
    await watched.shot("keys-after-revoke")
    async with database.sql_connection() as conn:
        assert await conn.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", spare_id)
        revoked = await conn.fetchrow("SELECT actor_type, actor_id FROM audit_entries WHERE action = 'api_key.revoked'"
                                      " AND object_id = $1", str(spare_id))
        assert dict(revoked) == {"actor_type": "api_key", "actor_id": str(key_id)}

    await page.click("header .signout button")  # type: ignore[attr-defined]
    await page.wait_for_url("**/dashboard/login?reason=signed_out")  # type: ignore[attr-defined]
    assert "signed out" in await text_of(watched, "notice")
    await page.goto(f"{watched.origin}/dashboard")  # type: ignore[attr-defined]
    assert "/dashboard/login" in page.url  # type: ignore[attr-defined]


async def test_sign_in_refusals_in_the_browser(watched: Watched, database: Database, paymentd) -> None:  # type: ignore[no-untyped-def]
    _, reader = await make_key(database, f"dash-reader-{uuid.uuid4().hex[:6]}", [Scope.payments_read])
    page = watched.page
    watched.allowed += ["status of 401", "status of 403"]
    await page.goto(f"{watched.origin}/dashboard/login")  # type: ignore[attr-defined]
    await page.fill("#key", reader)  # type: ignore[attr-defined]
    await page.click("button[type=submit]")  # type: ignore[attr-defined]
    assert "lacks the `dashboard` scope" in await text_of(watched, "error")
    await watched.shot("login-missing-scope")
    await page.fill("#key", "pd_000000000000_" + "0" * 43)  # type: ignore[attr-defined]
    await page.click("button[type=submit]")  # type: ignore[attr-defined]
    assert "invalid or revoked" in await text_of(watched, "error")
    assert "/dashboard/login" in page.url  # type: ignore[attr-defined]


async def test_session_expiry_in_the_browser(shopper: Shopper, watched: Watched, database: Database) -> None:
    await watched.sign_in(shopper.key)
    async with database.sql_connection() as conn:
        await conn.execute("UPDATE dashboard_sessions SET last_seen_at = clock_timestamp() - interval '2 hours'"
                           " WHERE account_id = $1", shopper.account_id)
    page = watched.page
    await page.goto(f"{watched.origin}/dashboard/payments")  # type: ignore[attr-defined]
    assert "/dashboard/login" in page.url  # type: ignore[attr-defined]
    assert "without activity" in await text_of(watched, "notice")
    await watched.shot("login-after-idle")
    # Signing in again lands where the person was going.
    await page.fill("#key", shopper.key)  # type: ignore[attr-defined]
    await page.click("button[type=submit]")  # type: ignore[attr-defined]
    await page.wait_for_url(f"{watched.origin}/dashboard/payments")  # type: ignore[attr-defined]


async def _key_id(database: Database, key: str) -> uuid.UUID:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT id FROM api_keys WHERE prefix = $1", key.split("_")[1])
