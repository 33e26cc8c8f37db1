"""Reviews through paymentd: one list for Radar's and paymentd's own; approve captures (and
approves at Stripe), deny cancels or refunds as fraudulent; Stripe closing its review closes
ours; the deadline decides what nobody did; every refusal answers in the contract's terms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.auth.keys import Scope
from paymentd.db import Database
from paymentd.fraud import deadlines, reviews
from paymentd.payments import sql
from tests.conftest import Hooked, make_key
from tests.integration.test_webhooks import eventually, new_payment

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
WAIT = {"Prefer": "wait=10"}


async def confirmed(api: httpx.AsyncClient, method: str, **fields) -> dict:
    payment = await new_payment(api, **fields)
    response = await api.post("/api/payments/confirm", json={"payment_id": payment["id"], "payment_method": method},
                              headers=WAIT)
    assert response.status_code == 200, response.text
    return response.json()


async def detail(api: httpx.AsyncClient, payment_id: str) -> dict:
    response = await api.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


def stripe_review(hooked: Hooked, intent_id: str) -> dict:
    pi = httpx.get(f"{hooked.sim.url}/v1/payment_intents/{intent_id}", headers=AUTH).json()
    return httpx.get(f"{hooked.sim.url}/v1/reviews/{pi['review']}", headers=AUTH).json()


async def rule_review(database: Database, payment_id: str) -> str:
    """What the fraud rules do for their `review` action: open_review in a transaction."""
    async with database.sql_transaction() as conn:
        payment = await sql.payment(conn, uuid.UUID(payment_id), lock=True)
        review = await reviews.open_review(conn, payment=payment, reason="velocity_card", source="rule")
    return str(review.id)


async def audit_actions(database: Database, review_id: str) -> list[tuple[str, str]]:
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT action, actor_type FROM audit_entries WHERE object_id = $1 ORDER BY seq",
                                review_id)
    return [(r["action"], r["actor_type"]) for r in rows]


# --------------------------------------------------------------------------- approve


async def test_approve_captures_and_approves_at_stripe(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated", capture_method="manual")
    review_id = payment["review"]["id"]
    listed = (await api.get("/api/reviews", params={"status": "open"})).json()
    assert [r["id"] for r in listed["data"]] == [review_id] and listed["data"][0]["payment_id"] == payment["id"]

    response = await api.post(f"/api/reviews/{review_id}/approve", headers=WAIT)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["closed_reason"], body["payment"]["status"]) == ("approved", "approved", "succeeded")
    assert body["closed_at"] and body["payment"]["review"]["status"] == "approved"
    there = stripe_review(hooked, payment["stripe_payment_intent_id"])
    assert (there["open"], there["closed_reason"]) == (False, "approved")
    assert (await api.get("/api/reviews", params={"status": "open"})).json()["data"] == []
    assert [r["id"] for r in (await api.get("/api/reviews", params={"status": "approved"})).json()["data"]] == [
        review_id]
    # Stripe's review.closed that follows changes nothing here.
    async with database.sql_connection() as conn:
        await eventually(lambda: conn.fetchval(
            "SELECT outcome FROM webhook_events WHERE type = 'review.closed' AND payment_intent_id = $1",
            payment["stripe_payment_intent_id"]))
    shown = await detail(api, payment["id"])
    assert shown["review"]["closed_reason"] == "approved" and shown["status"] == "succeeded"
    assert await audit_actions(database, review_id) == [
        ("review.opened", "api_key"), ("review.approved", "api_key"), ("review.closed", "api_key")]
    async with database.sql_connection() as conn:  # the merchant's webhooks about it, numbered
        outbox = [(r["type"], r["sequence"]) for r in await conn.fetch(
            "SELECT type, sequence FROM outbound_events WHERE object_id = $1 ORDER BY sequence", review_id)]
    assert outbox == [("review.opened", 1), ("review.closed", 2)]

    again = await api.post(f"/api/reviews/{review_id}/approve")
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_closed"
    denied = await api.post(f"/api/reviews/{review_id}/deny")
    assert denied.status_code == 409 and denied.json()["error"]["code"] == "review_closed"


async def test_approving_a_rule_review_captures_without_asking_radar(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_visa", capture_method="manual")
    review_id = await rule_review(database, payment["id"])
    before = len(httpx.get(f"{hooked.sim.url}/_sim/requests").json()["data"])
    response = await api.post(f"/api/reviews/{review_id}/approve", headers=WAIT)
    assert response.status_code == 200, response.text
    assert response.json()["payment"]["status"] == "succeeded" and response.json()["source"] == "rule"
    since = httpx.get(f"{hooked.sim.url}/_sim/requests").json()["data"][before:]
    assert any("/capture" in str(r) for r in since) and not any("/v1/reviews" in str(r) for r in since)


# --------------------------------------------------------------------------- deny


async def test_deny_cancels_the_authorization(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated", capture_method="manual")
    review_id = payment["review"]["id"]
    response = await api.post(f"/api/reviews/{review_id}/deny", headers=WAIT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["closed_reason"], body["payment"]["status"]) == ("denied", "denied", "canceled")
    # Stripe closes its own review on the cancel; its review.closed finds ours closed.
    there = stripe_review(hooked, payment["stripe_payment_intent_id"])
    assert (there["open"], there["closed_reason"]) == (False, "refunded_as_fraud")
    assert ("review.denied", "api_key") in await audit_actions(database, review_id)


async def test_deny_after_capture_refunds_as_fraudulent_once(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated")
    assert payment["status"] == "succeeded" and payment["review"]["status"] == "open"
    review_id = payment["review"]["id"]
    response = await api.post(f"/api/reviews/{review_id}/deny", headers=WAIT)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "denied"
    shown = await detail(api, payment["id"])
    assert shown["status"] == "refunded"
    assert [(r["amount"], r["reason"]) for r in shown["refunds"]] == [("12.50", "fraudulent")]


# --------------------------------------------------------------------------- Stripe closes it


async def test_a_review_closed_at_stripe_closes_it_here(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated")
    intent = payment["stripe_payment_intent_id"]
    prv = httpx.get(f"{hooked.sim.url}/v1/payment_intents/{intent}", headers=AUTH).json()["review"]
    httpx.post(f"{hooked.sim.url}/v1/reviews/{prv}/approve", headers=AUTH).raise_for_status()

    async def closed() -> dict | None:
        shown = await detail(api, payment["id"])
        return shown if shown["review"]["status"] != "open" else None

    shown = await eventually(closed)
    assert (shown["review"]["status"], shown["review"]["closed_reason"]) == ("approved", "processor_approved")
    assert ("review.closed", "webhook") in await audit_actions(database, shown["review"]["id"])


async def test_review_opened_by_webhook_alone_is_one_review(hooked: Hooked, api, database) -> None:
    """The confirm answer already opened it; Stripe's review.opened finds it there."""
    payment = await confirmed(api, "pm_card_riskLevelElevated")
    async with database.sql_connection() as conn:
        outcome = await eventually(lambda: conn.fetchval(
            "SELECT outcome FROM webhook_events WHERE type = 'review.opened' AND payment_intent_id = $1",
            payment["stripe_payment_intent_id"]))
        count = await conn.fetchval("SELECT count(*) FROM reviews WHERE payment_id = $1", uuid.UUID(payment["id"]))
    assert outcome == "applied: review open" and count == 1


# --------------------------------------------------------------------------- the deadline


async def _past_deadline(database: Database, review_id: str) -> None:
    async with database.sql_connection() as conn:
        await conn.execute("UPDATE reviews SET deadline_at = clock_timestamp() - interval '1 minute' WHERE id = $1",
                           uuid.UUID(review_id))


async def test_the_deadline_denies_an_undecided_authorization(hooked: Hooked, api, database, deps) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated", capture_method="manual")
    review_id = payment["review"]["id"]
    await _past_deadline(database, review_id)

    report = await deadlines.decide_due(deps)

    assert report.denied >= 1 and not [e for e in report.errors if review_id in e]
    shown = await detail(api, payment["id"])
    assert shown["status"] == "canceled"
    assert (shown["review"]["status"], shown["review"]["closed_reason"]) == ("denied", "deadline_denied")
    assert ("review.denied", "system") in await audit_actions(database, review_id)
    assert {"from": "requires_capture", "to": "canceled", "source": "reconciler"}.items() <= shown["events"][-1].items()


async def test_the_deadline_approves_when_the_account_says_so(hooked: Hooked, api, database, deps) -> None:
    payment = await confirmed(api, "pm_card_visa", capture_method="manual")
    review_id = await rule_review(database, payment["id"])
    async with database.sql_connection() as conn:
        await conn.execute("UPDATE accounts SET review_deadline_action = 'approve' WHERE id ="
                           " (SELECT account_id FROM payments WHERE id = $1)", uuid.UUID(payment["id"]))
    not_due = await deadlines.decide_due(deps)
    assert review_id not in str(not_due) and (await detail(api, payment["id"]))["review"]["status"] == "open"
    await _past_deadline(database, review_id)

    await deadlines.decide_due(deps)

    shown = await detail(api, payment["id"])
    assert shown["status"] == "succeeded"
    assert (shown["review"]["status"], shown["review"]["closed_reason"]) == ("approved", "deadline_approved")


async def test_a_review_on_a_captured_payment_has_no_deadline(api, database) -> None:
    payment = await confirmed(api, "pm_card_visa")
    review_id = await rule_review(database, payment["id"])
    listed = (await api.get("/api/reviews")).json()["data"]
    assert next(r for r in listed if r["id"] == review_id)["deadline_at"] is None


# --------------------------------------------------------------------------- refusals


async def test_another_accounts_review_is_404_and_unknown_ones_too(hooked: Hooked, api, database) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated", capture_method="manual")
    review_id = payment["review"]["id"]
    _, other_key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=hooked.server.url, headers={"Authorization": f"Bearer {other_key}"},
                                 timeout=30) as other:
        for verb in ("approve", "deny"):
            response = await other.post(f"/api/reviews/{review_id}/{verb}")
            assert response.status_code == 404 and response.json()["error"]["type"] == "invalid_request_error"
        assert review_id not in (await other.get("/api/reviews")).text
    missing = await api.post(f"/api/reviews/{uuid.uuid4()}/approve")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "resource_missing"
    bad_id = await api.post("/api/reviews/not-a-uuid/approve")
    assert bad_id.status_code in (400, 422) and "error" in bad_id.json()
    assert (await detail(api, payment["id"]))["review"]["status"] == "open"  # nothing moved


async def test_scopes_and_bad_queries(hooked: Hooked, api, database) -> None:
    _, reader = await make_key(database, f"reader-{uuid.uuid4().hex[:8]}", [Scope.payments_read])
    async with httpx.AsyncClient(base_url=hooked.server.url, headers={"Authorization": f"Bearer {reader}"},
                                 timeout=30) as client:
        for call in (client.get("/api/reviews"), client.post(f"/api/reviews/{uuid.uuid4()}/approve")):
            response = await call
            assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    for params, param in (({"status": "pending"}, "status"), ({"limit": 0}, "limit"), ({"cursor": "zzz"}, "cursor")):
        response = await api.get("/api/reviews", params=params)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == param


async def test_a_review_cannot_be_approved_before_the_payment_is_authorized(api, database) -> None:
    payment = await new_payment(api, capture_method="manual")
    review_id = await rule_review(database, payment["id"])
    response = await api.post(f"/api/reviews/{review_id}/approve")
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    # Denying it cancels the unconfirmed payment.
    denied = await api.post(f"/api/reviews/{review_id}/deny", headers=WAIT)
    assert denied.status_code == 200, denied.text
    assert denied.json()["payment"]["status"] == "canceled"


async def test_a_decision_under_way_refuses_the_other_one(api, database) -> None:
    payment = await confirmed(api, "pm_card_visa", capture_method="manual")
    review_id = await rule_review(database, payment["id"])
    async with database.sql_connection() as conn:
        await conn.execute("UPDATE reviews SET decision = 'approve' WHERE id = $1", uuid.UUID(review_id))
    response = await api.post(f"/api/reviews/{review_id}/deny")
    assert response.status_code == 409 and response.json()["error"]["code"] == "review_decision_in_progress"
    # The same decision again (a retry after a crash) goes through.
    response = await api.post(f"/api/reviews/{review_id}/approve", headers=WAIT)
    assert response.status_code == 200 and response.json()["payment"]["status"] == "succeeded", response.text


async def test_the_list_pages_newest_first(api, database) -> None:
    ids = []
    for _ in range(3):
        payment = await new_payment(api, capture_method="manual")
        ids.append(await rule_review(database, payment["id"]))
    first = (await api.get("/api/reviews", params={"limit": 2})).json()
    assert [r["id"] for r in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = (await api.get("/api/reviews", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [r["id"] for r in rest["data"]] == [ids[0]] and not rest["has_more"]


async def test_approving_what_stripe_closed_otherwise_is_409(hooked: Hooked, api, database, webhooks_off) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated")
    intent = payment["stripe_payment_intent_id"]
    # Refunded at Stripe directly, its review.closed never delivered: ours is still open.
    httpx.post(f"{hooked.sim.url}/v1/refunds", headers=AUTH, data={"payment_intent": intent}).raise_for_status()
    review_id = payment["review"]["id"]
    response = await api.post(f"/api/reviews/{review_id}/approve")
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "review_closed" and "refunded" in response.json()["error"]["message"]
    async with database.sql_connection() as conn:
        row = await conn.fetchrow("SELECT status, decision FROM reviews WHERE id = $1", uuid.UUID(review_id))
    assert tuple(row) == ("open", None)  # nothing claimed: the late review.closed will close it


async def test_approving_what_stripe_approved_already_finishes_here(hooked: Hooked, api, webhooks_off) -> None:
    payment = await confirmed(api, "pm_card_riskLevelElevated", capture_method="manual")
    prv = stripe_review(hooked, payment["stripe_payment_intent_id"])["id"]
    httpx.post(f"{hooked.sim.url}/v1/reviews/{prv}/approve", headers=AUTH).raise_for_status()
    response = await api.post(f"/api/reviews/{payment['review']['id']}/approve", headers=WAIT)
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["payment"]["status"]) == ("approved", "succeeded")
