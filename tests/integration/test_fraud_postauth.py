"""Post-authorization rules (Radar's verdict) through paymentd, against the simulator:
evaluated once per attempt, whoever reports the authorization first (the confirm's answer
or a webhook); `review` holds the payment, `block` cancels the authorization or refunds
the capture as fraudulent, once however often the report arrives."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from paymentd.fraud import store
from tests.conftest import Hooked
from tests.integration.test_fraud_reviews import confirmed as confirm, detail
from tests.integration.test_webhooks import eventually, signed

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
ELEVATED = "pm_card_riskLevelElevated"


async def put_rules(api: httpx.AsyncClient, rules: list[dict]) -> int:
    response = await api.put("/api/fraud/rules", json={"rules": rules, "lists": {}})
    assert response.status_code == 200, response.text
    return response.json()["version"]


async def post_auth_decisions(database: Database, payment_id: str) -> list[dict]:
    async with database.sql_connection() as conn:
        return [d for d in await store.of_payment(conn, uuid.UUID(payment_id)) if d["stage"] == "post_auth"]


def refunds_at_stripe(hooked: Hooked, intent_id: str) -> list[dict]:
    return httpx.get(f"{hooked.sim.url}/v1/refunds", headers=AUTH, params={"payment_intent": intent_id}).json()["data"]


async def test_an_elevated_risk_rule_holds_the_authorization_for_review(hooked: Hooked, api, database) -> None:
    version = await put_rules(api, [{"id": "radar_elevated", "condition": 'radar_risk_level == "elevated"',
                                     "action": "review"}])
    payment = await confirm(api, ELEVATED, capture_method="manual")
    assert payment["status"] == "requires_capture"
    assert payment["risk"]["level"] == "elevated" and "radar_elevated" in payment["risk"]["rules"]

    shown = await detail(api, payment["id"])
    assert shown["status"] == "requires_capture"
    reviews = (await api.get("/api/reviews", params={"status": "open"})).json()["data"]
    [ours] = [r for r in reviews if r["payment_id"] == payment["id"] and r["source"] == "rule"]
    assert ours["status"] == "open" and "radar_elevated" in ours["reason"]
    [decision] = await post_auth_decisions(database, payment["id"])
    assert (decision["action"], decision["fired"], decision["rule_set_version"], decision["attempt"]) == (
        "review", ["radar_elevated"], version, 1)
    assert decision["inputs"]["radar_risk_level"] == "elevated"
    audit = (await api.get("/api/audit", params={"action": "fraud.review", "object_id": payment["id"]})).json()
    [entry] = audit["data"]
    assert entry["changes"]["stage"] == [None, "post_auth"] and entry["changes"]["rules"] == [None, ["radar_elevated"]]


async def test_a_block_rule_cancels_a_manual_capture_authorization(hooked: Hooked, api, database) -> None:
    version = await put_rules(api, [{"id": "any_score", "condition": "radar_risk_score > 0", "action": "block"}])
    payment = await confirm(api, "pm_card_visa", capture_method="manual")
    assert payment["status"] == "canceled", payment
    assert "any_score" in payment["risk"]["rules"]
    pi = httpx.get(f"{hooked.sim.url}/v1/payment_intents/{payment['stripe_payment_intent_id']}", headers=AUTH).json()
    assert (pi["status"], pi["cancellation_reason"]) == ("canceled", "fraudulent")
    [decision] = await post_auth_decisions(database, payment["id"])
    assert (decision["stage"], decision["action"], decision["fired"], decision["rule_set_version"]) == (
        "post_auth", "block", ["any_score"], version)
    assert decision["outcome"] == "canceled"
    audit = (await api.get("/api/audit", params={"action": "fraud.blocked", "object_id": payment["id"]})).json()
    [entry] = audit["data"]
    assert entry["changes"]["stage"] == [None, "post_auth"] and entry["changes"]["rules"] == [None, ["any_score"]]


async def test_a_block_rule_refunds_a_captured_payment_once(hooked: Hooked, api, database, webhooks_off) -> None:
    # No post-auth rule when the confirm answers: the webhook is the first to run one.
    await put_rules(api, [])
    payment = await confirm(api, "pm_card_visa")
    assert payment["status"] == "succeeded" and await post_auth_decisions(database, payment["id"]) == []
    version = await put_rules(api, [{"id": "any_score", "condition": "radar_risk_score > 0", "action": "block"}])

    intent_id = payment["stripe_payment_intent_id"]
    events = httpx.get(f"{hooked.sim.url}/v1/events", headers=AUTH, params={"limit": "100"}).json()["data"]
    [event] = [e for e in events if e["type"] == "payment_intent.succeeded" and e["data"]["object"]["id"] == intent_id]
    body = json.dumps(event).encode()
    other = json.dumps({**event, "id": f"evt_test_{uuid.uuid4().hex}"}).encode()
    async with httpx.AsyncClient(base_url=hooked.server.url, timeout=30) as client:
        for payload in (body, body, other):
            response = await client.post("/api/webhooks/stripe", content=payload,
                                         headers=signed(payload, hooked.secret))
            assert response.status_code == 200, response.text

    async def refunded() -> dict | None:
        shown = await detail(api, payment["id"])
        return shown if shown["status"] == "refunded" else None

    shown = await eventually(refunded)
    assert [(r["amount"], r["reason"]) for r in shown["refunds"]] == [("12.50", "fraudulent")]
    assert len(refunds_at_stripe(hooked, intent_id)) == 1
    [decision] = await post_auth_decisions(database, payment["id"])
    assert (decision["action"], decision["rule_set_version"], decision["outcome"]) == ("block", version, "refunded")
    assert "any_score" in shown["risk"]["rules"]
