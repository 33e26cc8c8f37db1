"""Disputes end to end: the simulator opens and closes chargebacks, its charge.dispute.*
webhooks (or the reconciler) move the payment to `disputed` and back when won, keep it
there when lost, and GET /api/payments/{id} shows the dispute and the moves."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from paymentd.disputes.models import Dispute
from paymentd.jobs.reconciler import sweep
from paymentd.webhooks.models import WebhookEvent
from tests.conftest import Hooked
from tests.integration.test_webhooks import (
    confirm,
    event_body,
    eventually,
    moves,
    new_payment,
    signed,
    status_of,
)

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}


async def paid(api: httpx.AsyncClient, amount: str = "40.00", method: str = "pm_card_visa") -> dict:
    payment = await new_payment(api, amount=amount)
    response = await confirm(api, payment["id"], method)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    return response.json()


def charge_of(hooked: Hooked, intent_id: str) -> str:
    return httpx.get(f"{hooked.sim.url}/v1/payment_intents/{intent_id}", headers=AUTH).json()["latest_charge"]


async def detail(api: httpx.AsyncClient, payment_id: str) -> dict:
    response = await api.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def dispute_shown(api: httpx.AsyncClient, payment_id: str, payment_status: str | None = None,
                        **wanted: Any) -> dict | None:
    """The payment once it shows a dispute like `wanted` (and, if given, has `payment_status`:
    GET reads the payment and its disputes in two transactions, so one may run ahead)."""
    shown = await detail(api, payment_id)
    if payment_status is not None and shown["status"] != payment_status:
        return None
    for dispute in shown["disputes"]:
        if all(dispute.get(k) == v for k, v in wanted.items()):
            return shown
    return None


async def dispute_rows_processed(database: Database, intent_id: str, types: set[str]) -> list[WebhookEvent] | None:
    async with database.transaction() as session:
        rows = list((await session.scalars(select(WebhookEvent).where(
            WebhookEvent.payment_intent_id == intent_id, WebhookEvent.type.in_(types)))).all())
    if {r.type for r in rows} >= types and all(r.processed_at for r in rows):
        return rows
    return None


async def post_event(hooked: Hooked, body: bytes) -> str:
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200, response.text
    return json.loads(body)["id"]


async def processed(database: Database, event_id: str) -> WebhookEvent | None:
    async with database.transaction() as session:
        row = await session.get(WebhookEvent, event_id)
        return row if row and row.processed_at else None


def dispute_object(intent_id: str | None, charge: str, status: str, *, dispute_id: str | None = None,
                   amount: int = 4000, currency: str = "usd") -> dict:
    return {"id": dispute_id or f"du_test_{uuid.uuid4().hex[:10]}", "object": "dispute", "amount": amount,
            "currency": currency, "charge": charge, "payment_intent": intent_id, "reason": "fraudulent",
            "status": status, "created": int(time.time()), "evidence_details": {"due_by": int(time.time()) + 86400}}


# --------------------------------------------------------------------------- won, lost


async def test_a_dispute_moves_the_payment_to_disputed_and_back_when_won(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    pi = payment["stripe_payment_intent_id"]
    opened = hooked.sim_post(f"/_sim/charges/{charge_of(hooked, pi)}/dispute", reason="product_not_received")

    shown = await eventually(lambda: dispute_shown(api, payment["id"], "disputed", status="needs_response"))
    [dispute] = shown["disputes"]
    assert dispute["amount"] == "40.00" and dispute["currency"] == "usd"
    assert dispute["reason"] == "product_not_received" and dispute["outcome"] is None
    assert dispute["closed_at"] is None and dispute["evidence_due_by"] and dispute["created_at"]
    uuid.UUID(dispute["id"])  # paymentd's own id, not Stripe's
    assert {"from": "succeeded", "to": "disputed", "source": "webhook"}.items() <= next(
        e for e in shown["events"] if e["to"] == "disputed").items()
    # Stripe refuses refunds on a disputed charge; paymentd says so without asking.
    refused = await api.post("/api/payments/refund", json={"payment_id": payment["id"]})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "invalid_state"

    hooked.sim_post(f"/_sim/disputes/{opened['id']}/close", outcome="won")

    shown = await eventually(lambda: dispute_shown(api, payment["id"], "succeeded", status="won"))
    assert shown["disputes"][0]["outcome"] == "won" and shown["disputes"][0]["closed_at"]
    assert [m for m in await moves(database, payment["id"]) if "disputed" in m[:2]] == [
        ("succeeded", "disputed", "webhook"), ("disputed", "succeeded", "webhook")]
    # funds_withdrawn / funds_reinstated repeat what is known: applied, nothing moves again.
    await eventually(lambda: dispute_rows_processed(database, pi, {
        "charge.dispute.created", "charge.dispute.funds_withdrawn", "charge.dispute.closed",
        "charge.dispute.funds_reinstated"}))
    assert len([m for m in await moves(database, payment["id"]) if "disputed" in m[:2]]) == 2
    # The merchant's webhooks (outbox): the dispute's own events, numbered, and the payment's moves.
    async with database.sql_connection() as conn:
        outbox = await conn.fetch("SELECT object_id, type, sequence FROM outbound_events"
                                  " WHERE object_id = ANY($1::text[]) ORDER BY object_id, sequence",
                                  [payment["id"], dispute["id"]])
    assert [(r["type"], r["sequence"]) for r in outbox if r["object_id"] == dispute["id"]] == [
        ("dispute.created", 1), ("dispute.closed", 2)]
    payment_types = [r["type"] for r in outbox if r["object_id"] == payment["id"]]
    assert payment_types[-2:] == ["payment.disputed", "payment.succeeded"]
    # Stripe may still refuse refunds on the charge: paymentd answers with the contract's error.
    again = await api.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "5.00"})
    assert again.status_code == 201 or again.json()["error"]["code"] == "invalid_state", again.text
    assert (await detail(api, payment["id"]))["amount_refunded"] == ("5.00" if again.status_code == 201 else "0.00")


async def test_a_lost_dispute_keeps_the_payment_disputed_and_records_the_loss(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    opened = hooked.sim_post(f"/_sim/charges/{charge_of(hooked, payment['stripe_payment_intent_id'])}/dispute")
    await eventually(lambda: dispute_shown(api, payment["id"], status="needs_response"))

    hooked.sim_post(f"/_sim/disputes/{opened['id']}/close", outcome="lost")

    shown = await eventually(lambda: dispute_shown(api, payment["id"], status="lost"))
    assert (await detail(api, payment["id"]))["status"] == "disputed"
    assert shown["disputes"][0]["outcome"] == "lost" and shown["disputes"][0]["closed_at"]
    assert [m for m in await moves(database, payment["id"]) if "disputed" in m[:2]] == [
        ("succeeded", "disputed", "webhook")]
    refused = await api.post("/api/payments/refund", json={"payment_id": payment["id"]})
    assert refused.status_code == 409


async def test_a_won_dispute_returns_to_what_the_refunds_imply(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    refunded = await api.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "15.00"})
    assert refunded.status_code == 201
    opened = hooked.sim_post(f"/_sim/charges/{charge_of(hooked, payment['stripe_payment_intent_id'])}/dispute",
                             amount=2500)
    shown = await eventually(lambda: dispute_shown(api, payment["id"], "disputed", status="needs_response"))
    assert shown["disputes"][0]["amount"] == "25.00"

    hooked.sim_post(f"/_sim/disputes/{opened['id']}/close", outcome="won")

    shown = await eventually(lambda: dispute_shown(api, payment["id"], "partially_refunded", status="won"))
    assert shown["amount_refunded"] == "15.00"
    assert ("disputed", "partially_refunded", "webhook") in await moves(database, payment["id"])


async def test_the_dispute_test_card_is_disputed_by_itself(hooked: Hooked, api, database) -> None:
    payment = await paid(api, "12.00", "pm_card_createDispute")
    shown = await eventually(lambda: dispute_shown(api, payment["id"], "disputed", status="needs_response"))
    assert shown["disputes"][0]["reason"] == "fraudulent"


# --------------------------------------------------------------------------- order, mapping, failure paths


async def test_events_out_of_order_and_stale_updates_change_nothing(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    pi = payment["stripe_payment_intent_id"]
    charge = charge_of(hooked, pi)
    dispute_id = f"du_test_{uuid.uuid4().hex[:10]}"
    # closed (won) arrives before created: the dispute is recorded closed, the payment never leaves succeeded.
    closed = await post_event(hooked, event_body("charge.dispute.closed",
                                                 dispute_object(pi, charge, "won", dispute_id=dispute_id)))
    await eventually(lambda: processed(database, closed))
    created = await post_event(hooked, event_body("charge.dispute.created",
                                                  dispute_object(pi, charge, "needs_response", dispute_id=dispute_id)))
    row = await eventually(lambda: processed(database, created))
    assert "stays won" in row.outcome
    shown = await detail(api, payment["id"])
    assert shown["status"] == "succeeded"
    assert [(d["status"], d["outcome"]) for d in shown["disputes"]] == [("won", "won")]
    assert not [m for m in await moves(database, payment["id"]) if "disputed" in m[:2]]


async def test_an_updated_dispute_updates_the_row(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    pi = payment["stripe_payment_intent_id"]
    charge = charge_of(hooked, pi)
    dispute_id = f"du_test_{uuid.uuid4().hex[:10]}"
    for kind, status in (("created", "warning_needs_response"), ("updated", "needs_response"),
                         ("updated", "under_review"), ("updated", "needs_response")):  # the last one is stale
        event_id = await post_event(hooked, event_body(f"charge.dispute.{kind}",
                                                       dispute_object(pi, charge, status, dispute_id=dispute_id)))
        await eventually(lambda event_id=event_id: processed(database, event_id))
    shown = await detail(api, payment["id"])
    assert shown["status"] == "disputed"
    assert [d["status"] for d in shown["disputes"]] == ["under_review"]
    # An inquiry closed without escalating (warning_closed) counts as won.
    event_id = await post_event(hooked, event_body("charge.dispute.closed",
                                                   dispute_object(pi, charge, "warning_closed",
                                                                  dispute_id=f"du_test_{uuid.uuid4().hex[:10]}")))
    await eventually(lambda: processed(database, event_id))
    assert (await detail(api, payment["id"]))["status"] == "disputed"  # the first one is still open
    event_id = await post_event(hooked, event_body("charge.dispute.closed",
                                                   dispute_object(pi, charge, "won", dispute_id=dispute_id)))
    await eventually(lambda: processed(database, event_id))
    shown = await detail(api, payment["id"])
    assert shown["status"] == "succeeded" and len(shown["disputes"]) == 2


async def test_a_dispute_without_payment_intent_is_mapped_through_its_charge(hooked: Hooked, api, database) -> None:
    payment = await paid(api)
    pi = payment["stripe_payment_intent_id"]
    charge = charge_of(hooked, pi)
    # paymentd learns the charge id from the charge events it stored.
    await eventually(lambda: dispute_rows_processed(database, pi, {"charge.succeeded"}))
    event_id = await post_event(hooked, event_body("charge.dispute.created",
                                                   dispute_object(None, charge, "needs_response")))
    row = await eventually(lambda: processed(database, event_id))
    assert row.outcome.startswith("applied"), row.outcome
    assert await status_of(database, payment["id"]) == "disputed"


async def test_disputes_for_unknown_payments_are_set_aside(hooked: Hooked, database) -> None:
    unknown = await post_event(hooked, event_body("charge.dispute.created",
                                                  dispute_object("pi_not_ours", "ch_not_ours", "needs_response")))
    nothing = await post_event(hooked, event_body("charge.dispute.created",
                                                  dispute_object(None, "ch_nobody_knows", "needs_response")))
    assert (await eventually(lambda: processed(database, unknown))).outcome.startswith("ignored: no payment")
    assert (await eventually(lambda: processed(database, nothing))).outcome.startswith("ignored")
    async with database.transaction() as session:
        assert (await session.scalars(select(Dispute).where(Dispute.charge_id.in_(
            ("ch_not_ours", "ch_nobody_knows"))))).all() == []


async def test_a_dispute_before_paymentd_saw_the_charge_succeed_waits_for_it(hooked: Hooked, api, database) -> None:
    # A SEPA debit still processing here, while (say) Stripe already reports a dispute.
    hooked.sim_post("/_sim/config", settle_delay_ms=600_000)
    try:
        async with httpx.AsyncClient() as stripe:
            method = (await stripe.post(f"{hooked.sim.url}/v1/payment_methods", headers=AUTH, data={
                "type": "sepa_debit", "sepa_debit[iban]": "DE89370400440532013000",
                "billing_details[name]": "Jenny Rosen", "billing_details[email]": "jenny@example.com"})).json()
        payment = await new_payment(api, amount="40.00", currency="eur", payment_method_types=["sepa_debit"])
        response = await confirm(api, payment["id"], method["id"])
        assert response.json()["status"] == "processing", response.text
    finally:
        hooked.sim_post("/_sim/config", settle_delay_ms=1000)
    pi = payment["stripe_payment_intent_id"]
    event_id = await post_event(hooked, event_body("charge.dispute.created",
                                                   dispute_object(pi, charge_of(hooked, pi), "needs_response",
                                                                  currency="eur")))

    async def retried() -> WebhookEvent | None:
        async with database.transaction() as session:
            row = await session.get(WebhookEvent, event_id)
            return row if row and row.attempts >= 1 and row.last_error else None

    row = await eventually(retried)
    assert row.processed_at is None and "DisputeNotYetApplicable" in row.last_error
    assert await status_of(database, payment["id"]) == "processing"

    hooked.sim_post(f"/_sim/payment_intents/{pi}/settle", outcome="succeed")
    await eventually(lambda: processed(database, event_id), timeout=30)
    assert await status_of(database, payment["id"]) == "disputed"
    assert [m[:2] for m in await moves(database, payment["id"])][-2:] == [
        ("processing", "succeeded"), ("succeeded", "disputed")]


async def test_a_dispute_whose_webhooks_never_arrived_is_found_by_the_reconciler(
    hooked: Hooked, api, database, deps, webhooks_off
) -> None:
    payment = await paid(api)
    hooked.sim_post(f"/_sim/charges/{charge_of(hooked, payment['stripe_payment_intent_id'])}/dispute")
    assert await status_of(database, payment["id"]) == "succeeded"  # nobody told paymentd

    report = await sweep(deps)

    assert report.events_missed >= 1, report
    assert await status_of(database, payment["id"]) == "disputed"
    assert ("succeeded", "disputed", "reconciler") in await moves(database, payment["id"])
    assert (await detail(api, payment["id"]))["disputes"][0]["status"] == "needs_response"
