"""Radar's verdict through paymentd: every Radar test instrument ends in the right status with
the right `risk`, recorded per attempt; Radar's manual reviews open in paymentd's review list;
a Radar block is a decline like any other (402 card_error, `fraudulent`, counted in reports)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from paymentd.fraud import reviews
from paymentd.payments import sql
from tests.conftest import Hooked
from tests.integration.test_webhooks import eventually, new_payment

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
WAIT = {"Prefer": "wait=10"}

BLOCKED = {"level": "highest", "score": 95, "outcome": "blocked", "rules": []}
ELEVATED = {"level": "elevated", "score": 68, "outcome": "manual_review", "rules": []}
NORMAL = {"level": "normal", "score": 32, "outcome": "authorized", "rules": []}


def card_method(hooked: Hooked, number: str) -> str:
    """A PaymentMethod made at the simulator from a card number, as Stripe.js would."""
    response = httpx.post(f"{hooked.sim.url}/v1/payment_methods", headers=AUTH, data={
        "type": "card", "card[number]": number, "card[exp_month]": "12", "card[exp_year]": "2034",
        "card[cvc]": "123"})
    assert response.status_code == 200, response.text
    return response.json()["id"]


async def confirm(api: httpx.AsyncClient, payment_id: str, method: str) -> httpx.Response:
    return await api.post("/api/payments/confirm", json={"payment_id": payment_id, "payment_method": method},
                          headers=WAIT)


async def detail(api: httpx.AsyncClient, payment_id: str) -> dict:
    response = await api.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def attempts(database: Database, payment_id: str) -> list[dict]:
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT number, outcome, decline_code, risk_level, risk_score, risk_outcome,"
                                " risk_reason FROM payment_attempts WHERE payment_id = $1 ORDER BY number",
                                uuid.UUID(payment_id))
    return [dict(r) for r in rows]


@pytest.mark.parametrize("instrument", [
    "pm_card_radarBlock", "4100000000000019", "pm_card_riskLevelHighest", "4000000000004954"])
async def test_radar_blocks_answer_402_fraudulent_and_record_the_verdict(hooked: Hooked, api, database,
                                                                         instrument) -> None:
    payment = await new_payment(api)
    assert (payment["risk"], payment["review"]) == (None, None)  # before any attempt
    method = instrument if instrument.startswith("pm_") else card_method(hooked, instrument)

    response = await confirm(api, payment["id"], method)

    assert response.status_code == 402, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["decline_code"], error["payment_id"]) == (
        "card_error", "card_declined", "fraudulent", payment["id"])
    shown = await detail(api, payment["id"])
    assert shown["status"] == "requires_payment_method" and shown["risk"] == BLOCKED
    assert shown["last_payment_error"]["decline_code"] == "fraudulent" and shown["review"] is None
    [attempt] = await attempts(database, payment["id"])
    assert (attempt["outcome"], attempt["decline_code"], attempt["risk_level"], attempt["risk_score"],
            attempt["risk_outcome"], attempt["risk_reason"]) == (
        "failed", "fraudulent", "highest", 95, "blocked", "highest_risk_level")


async def test_a_radar_block_then_a_good_card_records_each_attempt(api, database) -> None:
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_radarBlock")).status_code == 402
    response = await confirm(api, payment["id"], "pm_card_visa")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded" and response.json()["risk"] == NORMAL
    assert [(a["outcome"], a["risk_outcome"], a["risk_level"]) for a in await attempts(database, payment["id"])] == [
        ("failed", "blocked", "highest"), ("succeeded", "authorized", "normal")]


async def test_radar_blocks_count_as_declines_in_reports(api) -> None:
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_radarBlock")).status_code == 402
    today = datetime.now(UTC).date()
    response = await api.get("/api/reports/summary", params={
        "from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))})
    assert response.status_code == 200, response.text
    assert "fraudulent" in response.text


@pytest.mark.parametrize("instrument", ["pm_card_riskLevelElevated", "4000000000009235"])
async def test_elevated_risk_succeeds_and_opens_a_radar_review(hooked: Hooked, api, database, instrument) -> None:
    payment = await new_payment(api)
    method = instrument if instrument.startswith("pm_") else card_method(hooked, instrument)

    response = await confirm(api, payment["id"], method)

    assert response.status_code == 200, response.text
    answered = response.json()
    assert answered["status"] == "succeeded" and answered["risk"] == ELEVATED
    review = answered["review"]
    assert (review["status"], review["source"], review["reason"], review["closed_at"]) == (
        "open", "radar", "elevated_risk_level", None)
    # Captured already (automatic capture): no authorization to expire, so no deadline.
    assert review["deadline_at"] is None and review["opened_at"]
    # The review.opened webhook that follows finds it open already: still one review.
    intent = answered["stripe_payment_intent_id"]
    stripe_review = httpx.get(f"{hooked.sim.url}/v1/payment_intents/{intent}", headers=AUTH).json()["review"]
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT source, stripe_review_id, status FROM reviews WHERE payment_id = $1",
                                uuid.UUID(payment["id"]))
        opened = await conn.fetchval("SELECT count(*) FROM audit_entries WHERE action = 'review.opened'"
                                     " AND object_id = $1", review["id"])
    assert [tuple(r) for r in rows] == [("radar", stripe_review, "open")] and opened == 1
    assert (await detail(api, payment["id"]))["review"] == review


async def test_elevated_risk_on_manual_capture_is_held_for_review_with_a_deadline(api) -> None:
    payment = await new_payment(api, capture_method="manual")
    response = await confirm(api, payment["id"], "pm_card_riskLevelElevated")
    assert response.status_code == 200, response.text
    answered = response.json()
    assert answered["status"] == "requires_capture" and answered["risk"] == ELEVATED
    review = answered["review"]
    assert review["status"] == "open" and review["source"] == "radar"
    opened = datetime.fromisoformat(review["opened_at"])
    deadline = datetime.fromisoformat(review["deadline_at"])
    assert timedelta(hours=143, minutes=59) < deadline - opened <= timedelta(hours=144, seconds=5)


async def test_a_normal_card_is_authorized_with_normal_risk_and_no_review(api) -> None:
    payment = await new_payment(api)
    response = await confirm(api, payment["id"], "pm_card_visa")
    assert response.status_code == 200, response.text
    assert (response.json()["risk"], response.json()["review"]) == (NORMAL, None)
    page = (await api.get("/api/payments/history", params={"limit": 5})).json()
    assert next(p for p in page["data"] if p["id"] == payment["id"])["risk"] == NORMAL


async def test_open_review_is_idempotent_per_payment_and_source(api, database) -> None:
    payment = await new_payment(api, capture_method="manual")
    payment_id = uuid.UUID(payment["id"])
    async with database.sql_transaction() as conn:
        held = await sql.payment(conn, payment_id, lock=True)
        first = await reviews.open_review(conn, payment=held, reason="velocity_card", source="rule")
        again = await reviews.open_review(conn, payment=held, reason="other words", source="rule")
        assert held.review["id"] == str(first.id)
    assert again.id == first.id and again.reason == "velocity_card"
    shown = await detail(api, payment["id"])
    assert (shown["review"]["id"], shown["review"]["status"], shown["review"]["source"]) == (
        str(first.id), "open", "rule")
    async with database.sql_connection() as conn:
        count = await conn.fetchval("SELECT count(*) FROM reviews WHERE payment_id = $1", payment_id)
        opened = await conn.fetchval("SELECT count(*) FROM audit_entries WHERE action = 'review.opened'"
                                     " AND object_id = $1", str(first.id))
    assert (count, opened) == (1, 1)
    with pytest.raises(ValueError):
        async with database.sql_transaction() as conn:
            held = await sql.payment(conn, payment_id, lock=True)
            await reviews.open_review(conn, payment=held, reason="x", source="human")  # type: ignore[arg-type]
