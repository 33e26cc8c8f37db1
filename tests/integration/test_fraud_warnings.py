"""Early fraud warnings through paymentd: shown on the payment, applied once per event and
per warning, and an actionable one refunds the payment in full as fraudulent exactly once,
however often it is delivered; the account may turn that off; an inconsistent one is refused."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from tests.conftest import Hooked
from tests.integration.test_fraud_reviews import confirmed, detail
from tests.integration.test_webhooks import eventually, new_payment, signed

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}
WAIT = {"Prefer": "wait=10"}


def warning_event(warning: dict, event_type: str = "radar.early_fraud_warning.created",
                  event_id: str | None = None) -> bytes:
    return json.dumps({"id": event_id or f"evt_test_{uuid.uuid4().hex}", "object": "event", "type": event_type,
                       "created": int(time.time()), "livemode": False, "api_version": None,
                       "data": {"object": warning}}).encode()


async def deliver(hooked: Hooked, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200, response.text


async def event_outcome(database: Database, event_id: str) -> str | None:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT outcome FROM webhook_events WHERE id = $1 AND processed_at IS NOT NULL",
                                   event_id)


async def refunds_at_stripe(hooked: Hooked, intent_id: str) -> list[dict]:
    return httpx.get(f"{hooked.sim.url}/v1/refunds", headers=AUTH, params={"payment_intent": intent_id}).json()["data"]


@pytest.fixture
def quick_warnings(hooked: Hooked):  # type: ignore[no-untyped-def]
    hooked.sim_post("/_sim/config", early_fraud_warning_delay_ms=0)
    yield
    hooked.sim_post("/_sim/config", early_fraud_warning_delay_ms=1000)


async def test_an_actionable_warning_refunds_once_however_often_it_arrives(hooked: Hooked, api, database,
                                                                          quick_warnings) -> None:
    payment = await confirmed(api, "pm_card_createIssuerFraudRecord")
    assert payment["status"] == "succeeded"

    async def refunded() -> dict | None:
        shown = await detail(api, payment["id"])
        return shown if shown["status"] == "refunded" and shown["early_fraud_warnings"] else None

    shown = await eventually(refunded)
    [warning] = shown["early_fraud_warnings"]
    assert warning["id"].startswith("issfr_") and warning["fraud_type"] == "misc" and warning["refund_id"]
    assert [(r["id"], r["amount"], r["reason"]) for r in shown["refunds"]] == [
        (warning["refund_id"], "12.50", "fraudulent")]

    # The same warning again: the same event redelivered, and other events (new ids) about it.
    stripe_warning = httpx.get(f"{hooked.sim.url}/v1/radar/early_fraud_warnings/{warning['id']}",
                               headers=AUTH).json()
    async with database.sql_connection() as conn:
        created_id = await conn.fetchval("SELECT id FROM webhook_events WHERE type ="
                                         " 'radar.early_fraud_warning.created' AND payment_intent_id = $1",
                                         payment["stripe_payment_intent_id"])
    replays = [warning_event({**stripe_warning, "actionable": True}, event_id=created_id)]
    replays += [warning_event({**stripe_warning, "actionable": True}) for _ in range(3)]
    for body in replays:
        await deliver(hooked, body)
    for body in replays[1:]:
        assert await eventually(lambda b=body: event_outcome(database, json.loads(b)["id"]))

    shown = await detail(api, payment["id"])
    assert len(shown["refunds"]) == 1 and shown["status"] == "refunded"
    assert len(await refunds_at_stripe(hooked, payment["stripe_payment_intent_id"])) == 1
    # Stripe's own update (no longer actionable, after the refund) is recorded too.
    await eventually(lambda: _not_actionable(api, payment["id"]))
    async with database.sql_connection() as conn:
        actions = [r["action"] for r in await conn.fetch(
            "SELECT action FROM audit_entries WHERE object_id = $1 ORDER BY seq", warning["id"])]
    assert actions == ["early_fraud_warning.created", "early_fraud_warning.refunded", "early_fraud_warning.updated"]
    async with database.sql_connection() as conn:  # the merchant's webhook about it
        outbox = await conn.fetch("SELECT type, sequence FROM outbound_events WHERE object_id = $1", warning["id"])
    assert [(r["type"], r["sequence"]) for r in outbox] == [("early_fraud_warning.created", 1)]


async def _not_actionable(api: httpx.AsyncClient, payment_id: str) -> bool:
    return (await detail(api, payment_id))["early_fraud_warnings"][0]["actionable"] is False


async def test_an_account_may_keep_warnings_without_refunding(hooked: Hooked, api, database, quick_warnings) -> None:
    payment = await new_payment(api)
    async with database.sql_connection() as conn:
        await conn.execute("UPDATE accounts SET auto_refund_early_fraud_warnings = false WHERE id ="
                           " (SELECT account_id FROM payments WHERE id = $1)", uuid.UUID(payment["id"]))
    response = await api.post("/api/payments/confirm", headers=WAIT, json={
        "payment_id": payment["id"], "payment_method": "pm_card_createIssuerFraudRecord"})
    assert response.status_code == 200, response.text

    async def warned() -> dict | None:
        shown = await detail(api, payment["id"])
        return shown if shown["early_fraud_warnings"] else None

    shown = await eventually(warned)
    assert shown["early_fraud_warnings"][0]["actionable"] is True
    assert shown["early_fraud_warnings"][0]["refund_id"] is None
    assert shown["status"] == "succeeded" and shown["refunds"] == []


async def test_a_warning_that_does_not_fit_its_payment_is_refused(hooked: Hooked, api, database) -> None:
    payment = await new_payment(api, capture_method="manual")
    response = await api.post("/api/payments/confirm", headers=WAIT, json={
        "payment_id": payment["id"], "payment_method": "pm_card_visa"})
    assert response.status_code == 200, response.text
    canceled = await api.post("/api/payments/cancel", json={"payment_id": payment["id"]}, headers=WAIT)
    assert canceled.json()["status"] == "canceled", canceled.text
    body = warning_event({"id": f"issfr_{uuid.uuid4().hex[:12]}", "object": "radar.early_fraud_warning",
                          "actionable": True, "charge": "ch_x", "created": int(time.time()), "fraud_type": "misc",
                          "livemode": False, "payment_intent": payment["stripe_payment_intent_id"]})
    await deliver(hooked, body)
    outcome = await eventually(lambda: event_outcome(database, json.loads(body)["id"]))
    assert outcome.startswith("refused: inconsistent")
    shown = await detail(api, payment["id"])
    assert shown["early_fraud_warnings"] == [] and shown["refunds"] == []


async def test_a_warning_for_an_unknown_payment_is_ignored(hooked: Hooked, database) -> None:
    body = warning_event({"id": f"issfr_{uuid.uuid4().hex[:12]}", "object": "radar.early_fraud_warning",
                          "actionable": True, "charge": "ch_x", "created": int(time.time()), "fraud_type": "misc",
                          "livemode": False, "payment_intent": f"pi_unknown_{uuid.uuid4().hex[:8]}"})
    await deliver(hooked, body)
    assert (await eventually(lambda: event_outcome(database, json.loads(body)["id"]))).startswith("ignored")
