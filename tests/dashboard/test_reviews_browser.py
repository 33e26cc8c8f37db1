"""Reviews in the dashboard (headless Chromium): Radar's verdict on the payment page, the
open reviews counted on the overview as in the database, approve and deny through the
same service as /api/reviews, by the signed-in key."""

from __future__ import annotations

import uuid

from paymentd.auth.keys import Scope
from paymentd.db import Database
from tests.conftest import make_key
from tests.dashboard.conftest import Shopper, Watched, csrf_of, signed_in

ELEVATED = "pm_card_riskLevelElevated"


async def text_of(watched: Watched, testid: str) -> str:
    return (await watched.page.inner_text(f"[data-testid={testid}]")).strip()  # type: ignore[attr-defined]


async def test_reviews_approve_and_deny(shopper: Shopper, watched: Watched, database: Database) -> None:
    user = await shopper.user()
    first = await shopper.payment(user, "12.00", ELEVATED, capture_method="manual")
    second = await shopper.payment(user, "13.00", ELEVATED, capture_method="manual")
    assert first["review"]["status"] == "open" and second["review"]["status"] == "open"
    page = watched.page
    await watched.sign_in(shopper.key)
    async with database.sql_connection() as conn:
        open_now = await conn.fetchval("SELECT count(*) FROM reviews WHERE account_id = $1 AND status = 'open'",
                                       shopper.account_id)
    assert await text_of(watched, "open-reviews") == str(open_now) == "2"

    await page.goto(f"{watched.origin}/dashboard/reviews")  # type: ignore[attr-defined]
    assert await page.locator("[data-testid=reviews] tbody tr").count() == 2  # type: ignore[attr-defined]
    await watched.shot("reviews")
    await page.click(f"tr[data-review='{first['review']['id']}'] form[action$='/approve'] button")  # type: ignore[attr-defined]
    await page.wait_for_url(f"**/dashboard/payments/{first['id']}?done=approved*")  # type: ignore[attr-defined]
    assert await text_of(watched, "status") == "succeeded"
    assert "approved" in await text_of(watched, "review")
    assert "manual_review" in await text_of(watched, "risk") and "elevated" in await text_of(watched, "risk")
    timeline = await text_of(watched, "timeline")
    assert "Radar: manual_review, risk elevated" in timeline and "review.approved" in timeline
    await watched.shot("payment-review-approved")

    await page.goto(f"{watched.origin}/dashboard/payments/{second['id']}")  # type: ignore[attr-defined]
    await watched.shot("payment-under-review")
    await page.click("[data-testid=review-form] form[action$='/deny'] button")  # type: ignore[attr-defined]
    await page.wait_for_selector("[data-testid=notice]")  # type: ignore[attr-defined]
    assert await text_of(watched, "status") == "canceled"

    key_id = await _key_id(database, shopper.key)
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT payment_id, status FROM reviews WHERE account_id = $1", shopper.account_id)
        assert {(str(r["payment_id"]), r["status"]) for r in rows} == {(first["id"], "approved"),
                                                                       (second["id"], "denied")}
        actors = await conn.fetch("SELECT DISTINCT actor_type, actor_id FROM audit_entries WHERE account_id = $1"
                                  " AND action IN ('review.approved', 'review.denied')", str(shopper.account_id))
        assert [(a["actor_type"], a["actor_id"]) for a in actors] == [("api_key", str(key_id))]
    await page.goto(f"{watched.origin}/dashboard")  # type: ignore[attr-defined]
    assert await text_of(watched, "open-reviews") == "0"


async def test_deciding_needs_payments_write(shopper: Shopper, paymentd, database: Database) -> None:
    user = await shopper.user()
    held = await shopper.payment(user, "14.00", ELEVATED, capture_method="manual")
    _, viewer = await make_key(database, shopper.account, [Scope.dashboard])
    async with signed_in(paymentd.url, viewer) as client:
        page = await client.get("/dashboard/reviews")
        assert page.status_code == 200 and held["review"]["id"] in page.text and "/approve" not in page.text
        csrf = csrf_of((await client.get("/dashboard")).text)
        refused = await client.post(f"/dashboard/reviews/{held['review']['id']}/approve", data={"csrf": csrf})
        assert refused.status_code == 403 and "payments:write" in refused.text
        forged = await client.post(f"/dashboard/reviews/{held['review']['id']}/deny", data={"csrf": "nope"})
        assert forged.status_code == 403
    async with signed_in(paymentd.url, shopper.key) as client:
        csrf = csrf_of((await client.get("/dashboard")).text)
        missing = await client.post(f"/dashboard/reviews/{uuid.uuid4()}/approve", data={"csrf": csrf})
        assert missing.status_code == 404
        bad_status = await client.get("/dashboard/reviews", params={"status": "maybe"})
        assert bad_status.status_code == 400
    async with database.sql_connection() as conn:
        assert await conn.fetchval("SELECT status FROM reviews WHERE id = $1",
                                   uuid.UUID(held["review"]["id"])) == "open"


async def _key_id(database: Database, key: str) -> uuid.UUID:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT id FROM api_keys WHERE prefix = $1", key.split("_")[1])


async def test_early_fraud_warnings_show_in_the_timeline(shopper: Shopper, paymentd, database: Database) -> None:
    user = await shopper.user()
    paid = await shopper.payment(user, "15.00")
    async with database.sql_connection() as conn:  # as the warning's event handler stores it (fraud/events.py)
        await conn.execute(
            "INSERT INTO early_fraud_warnings (account_id, payment_id, provider_warning_id, fraud_type, actionable)"
            " VALUES ($1, $2, 'issfr_dash_1', 'made_with_stolen_card', true)", shopper.account_id,
            uuid.UUID(paid["id"]))
    async with signed_in(paymentd.url, shopper.key) as client:
        page = await client.get(f"/dashboard/payments/{paid['id']}")
        assert "early fraud warning: made_with_stolen_card" in page.text and "issfr_dash_1" in page.text
