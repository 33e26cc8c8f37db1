"""Refund events end to end: the simulator's refund.* webhooks (and, when they never
arrive, the reconciler) bring paymentd's refunds and the payment's status in line with
Stripe: a refund that fails later gives its amount back and the status follows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from paymentd.jobs.reconciler import PAYMENT_EVENT_TYPES, sweep
from paymentd.refunds.models import Refund
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


@pytest.fixture(autouse=True)
def refunds_fail_on_request(hooked: Hooked) -> Iterator[None]:
    """The refundFail card's refunds fail when the test says (/_sim/refunds/{id}/fail), not on a timer."""
    default = httpx.get(f"{hooked.sim.url}/_sim/config").json()["refund_fail_delay_ms"]
    hooked.sim_post("/_sim/config", refund_fail_delay_ms=600_000)
    yield
    hooked.sim_post("/_sim/config", refund_fail_delay_ms=default)


async def paid(api: httpx.AsyncClient, amount: str = "20.00", method: str = "pm_card_refundFail") -> dict:
    payment = await new_payment(api, amount=amount)
    response = await confirm(api, payment["id"], method)
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    return response.json()


async def refund(api: httpx.AsyncClient, payment_id: str, amount: str | None = None) -> dict:
    body = {"payment_id": payment_id, **({"amount": amount} if amount else {})}
    response = await api.post("/api/payments/refund", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def stripe_refund_id(database: Database, refund_id: str) -> str:
    async with database.transaction() as session:
        return (await session.get(Refund, uuid.UUID(refund_id))).provider_refund_id


async def detail(api: httpx.AsyncClient, payment_id: str) -> dict:
    response = await api.get(f"/api/payments/{payment_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def refund_rows(database: Database, intent_id: str) -> list[WebhookEvent]:
    async with database.transaction() as session:
        rows = await session.scalars(select(WebhookEvent).where(
            WebhookEvent.payment_intent_id == intent_id,
            WebhookEvent.type.in_(("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"))))
        return list(rows.all())


async def test_the_reconciler_lists_refund_and_dispute_events() -> None:
    for wanted in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated",
                   "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"):
        assert wanted in PAYMENT_EVENT_TYPES
    assert len(PAYMENT_EVENT_TYPES) <= 20 and len(set(PAYMENT_EVENT_TYPES)) == len(PAYMENT_EVENT_TYPES)


@pytest.mark.parametrize(("amounts", "before", "after", "refunded_after"), [
    (["20.00"], "refunded", "succeeded", "0.00"),
    (["8.00", "12.00"], "refunded", "partially_refunded", "12.00"),
    (["8.00"], "partially_refunded", "succeeded", "0.00"),
])
async def test_a_refund_failing_later_gives_the_amount_back_and_the_status_follows(
    hooked: Hooked, api, database, amounts, before, after, refunded_after
) -> None:
    payment = await paid(api)
    made = [await refund(api, payment["id"], amount) for amount in amounts]
    assert all(r["status"] == "succeeded" for r in made)
    shown = await detail(api, payment["id"])
    assert shown["status"] == before, (shown, await moves(database, payment["id"]))

    hooked.sim_post(f"/_sim/refunds/{await stripe_refund_id(database, made[0]['id'])}/fail")

    await eventually(lambda: _status_is(database, payment["id"], after))
    shown = await detail(api, payment["id"])
    assert shown["amount_refunded"] == refunded_after
    first = next(r for r in shown["refunds"] if r["id"] == made[0]["id"])
    assert first["status"] == "failed" and first["failure_reason"] == "expired_or_canceled_card"
    assert (before, after, "webhook") in await moves(database, payment["id"])
    # refund.failed, refund.updated and charge.refund.updated all say it: applied once, no second move.
    rows = await eventually(lambda: _all_processed(database, payment["stripe_payment_intent_id"], 3))
    assert all(r.outcome.startswith("applied") for r in rows), [r.outcome for r in rows]
    assert [m for m in await moves(database, payment["id"]) if m[:2] == (before, after)] == [(before, after, "webhook")]
    # The merchant's webhooks about that refund, numbered: created, succeeded, then failed.
    assert await outbox_types(database, made[0]["id"]) == ["refund.created", "refund.succeeded", "refund.failed"]

    # The failed amount is refundable again.
    again = await refund(api, payment["id"])
    assert again["amount"] == f"{20 - float(refunded_after):.2f}"
    assert (await detail(api, payment["id"]))["status"] == "refunded"


async def test_a_refund_made_outside_paymentd_is_recorded_from_its_webhook(hooked: Hooked, api, database) -> None:
    payment = await paid(api, "30.00", "pm_card_visa")
    async with httpx.AsyncClient(base_url=hooked.sim.url, headers=AUTH) as stripe:
        made = await stripe.post("/v1/refunds", data={"payment_intent": payment["stripe_payment_intent_id"],
                                                      "amount": "1000"})
    assert made.status_code == 200, made.text

    await eventually(lambda: _status_is(database, payment["id"], "partially_refunded"))
    shown = await detail(api, payment["id"])
    assert shown["amount_refunded"] == "10.00"
    assert [(r["amount"], r["status"]) for r in shown["refunds"]] == [("10.00", "succeeded")]
    assert ("succeeded", "partially_refunded", "webhook") in await moves(database, payment["id"])
    assert await outbox_types(database, shown["refunds"][0]["id"]) == ["refund.created", "refund.succeeded"]
    # And paymentd counts it: only 20.00 is left.
    too_much = await api.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "20.01"})
    assert too_much.status_code == 409 and too_much.json()["error"]["code"] == "amount_exceeds_refundable"


async def test_a_refund_event_waits_while_the_payments_own_refund_call_is_unanswered(
    hooked: Hooked, api, database
) -> None:
    payment = await paid(api, "30.00", "pm_card_visa")
    # One of paymentd's own refunds, reserved but its Stripe call not answered yet (in flight).
    unsent = uuid.uuid4()
    async with database.transaction() as session:
        await session.execute(text(
            "INSERT INTO refunds (id, account_id, payment_id, amount, currency, status) "
            "SELECT :id, account_id, id, 500, currency, 'pending' FROM payments WHERE id = :payment"),
            {"id": unsent, "payment": uuid.UUID(payment["id"])})
    async with httpx.AsyncClient(base_url=hooked.sim.url, headers=AUTH) as stripe:
        made = (await stripe.post("/v1/refunds", data={"payment_intent": payment["stripe_payment_intent_id"],
                                                       "amount": "700"})).json()

    # The event may be that call's answer: not recorded as a refund of its own, retried.
    rows = await eventually(lambda: _tried(database, payment["stripe_payment_intent_id"]))
    assert all(r.processed_at is None and "RefundNotYetKnown" in r.last_error for r in rows)
    assert len((await detail(api, payment["id"]))["refunds"]) == 1

    # Stripe refused that call after all (the row ends failed): the retry records the outside refund.
    async with database.transaction() as session:
        await session.execute(text("UPDATE refunds SET status = 'failed', failure_reason = 'test' WHERE id = :id"),
                              {"id": unsent})
    await eventually(lambda: _all_processed(database, payment["stripe_payment_intent_id"], 1), timeout=30)
    refunds = (await detail(api, payment["id"]))["refunds"]
    assert ("7.00", "succeeded") in [(r["amount"], r["status"]) for r in refunds]
    async with database.transaction() as session:
        assert (await session.scalar(select(Refund).where(Refund.provider_refund_id == made["id"]))) is not None


async def test_a_refund_event_for_a_payment_paymentd_does_not_have_is_set_aside(hooked: Hooked, database) -> None:
    body = event_body("refund.created", {"id": f"re_{uuid.uuid4().hex[:10]}", "object": "refund", "amount": 100,
                                         "currency": "usd", "status": "succeeded", "payment_intent": "pi_not_ours"})
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200
    event_id = json.loads(body)["id"]

    async def processed() -> WebhookEvent | None:
        async with database.transaction() as session:
            row = await session.get(WebhookEvent, event_id)
            return row if row and row.processed_at else None

    row = await eventually(processed)
    assert row.outcome.startswith("ignored: no payment")


async def test_a_refund_failure_whose_webhooks_never_arrived_is_found_by_the_reconciler(
    hooked: Hooked, api, database, deps, webhooks_off
) -> None:
    payment = await paid(api)
    made = await refund(api, payment["id"])
    assert (await detail(api, payment["id"]))["status"] == "refunded"
    hooked.sim_post(f"/_sim/refunds/{await stripe_refund_id(database, made['id'])}/fail")
    assert await status_of(database, payment["id"]) == "refunded"  # nobody told paymentd

    report = await sweep(deps)

    assert report.events_missed >= 1, report
    assert await status_of(database, payment["id"]) == "succeeded"
    assert ("refunded", "succeeded", "reconciler") in await moves(database, payment["id"])
    assert (await detail(api, payment["id"]))["refunds"][0]["status"] == "failed"


async def test_a_refund_whose_create_call_was_lost_is_sent_again_by_the_reconciler(
    hooked: Hooked, api, database, deps
) -> None:
    payment = await paid(api, "15.00", "pm_card_visa")
    # Reserved, then the process died before Stripe answered (or was even called).
    lost = uuid.uuid4()
    async with database.transaction() as session:
        await session.execute(text(
            "INSERT INTO refunds (id, account_id, payment_id, amount, currency, status, created_at, updated_at) "
            "SELECT :id, account_id, id, 1500, currency, 'pending', :old, :old FROM payments WHERE id = :payment"),
            {"id": lost, "payment": uuid.UUID(payment["id"]), "old": datetime.now(UTC) - timedelta(hours=1)})

    report = await sweep(deps)

    assert report.refunds_checked >= 1, report
    async with database.transaction() as session:
        row = await session.get(Refund, lost)
    assert row.status == "succeeded" and row.provider_refund_id
    assert await status_of(database, payment["id"]) == "refunded"
    assert ("succeeded", "refunded", "reconciler") in await moves(database, payment["id"])
    # Sent with the refund's own key: a second sweep refunds nothing more at Stripe.
    await sweep(deps)
    async with httpx.AsyncClient(base_url=hooked.sim.url, headers=AUTH) as stripe:
        listed = (await stripe.get("/v1/refunds", params={"payment_intent": payment["stripe_payment_intent_id"]}
                                   )).json()["data"]
    assert len(listed) == 1


async def _status_is(database: Database, payment_id: str, wanted: str) -> bool:
    return await status_of(database, payment_id) == wanted


async def _all_processed(database: Database, intent_id: str, at_least: int) -> list[WebhookEvent] | None:
    rows = await refund_rows(database, intent_id)
    if len(rows) >= at_least and all(r.processed_at is not None for r in rows):
        return rows
    return None


async def _tried(database: Database, intent_id: str) -> list[WebhookEvent] | None:
    rows = await refund_rows(database, intent_id)
    return rows if rows and all(r.attempts >= 1 and r.last_error for r in rows) else None


async def test_a_late_payment_intent_snapshot_never_undoes_a_refund(hooked: Hooked, api, database) -> None:
    payment = await paid(api, "10.00", "pm_card_visa")
    await refund(api, payment["id"])
    pi = payment["stripe_payment_intent_id"]
    # Stripe's PaymentIntent still says `succeeded` after a refund: a redelivered snapshot.
    body = event_body("payment_intent.succeeded", {"id": pi, "object": "payment_intent", "status": "succeeded",
                                                   "amount": 1000, "amount_received": 1000, "currency": "usd"})
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        assert (await client.post("/api/webhooks/stripe", content=body,
                                  headers=signed(body, hooked.secret))).status_code == 200
    event_id = json.loads(body)["id"]

    async def processed() -> WebhookEvent | None:
        async with database.transaction() as session:
            row = await session.get(WebhookEvent, event_id)
            return row if row and row.processed_at else None

    row = await eventually(processed)
    assert row.outcome.startswith("ignored: payment is refunded")
    assert await status_of(database, payment["id"]) == "refunded"
    assert ("refunded", "succeeded", "webhook") not in await moves(database, payment["id"])


async def outbox_types(database: Database, object_id: str) -> list[str]:
    """The outbound webhook types recorded for an object, in sequence order (gap-free)."""
    async with database.sql_connection() as conn:
        rows = await conn.fetch("SELECT type, sequence FROM outbound_events WHERE object_id = $1 ORDER BY sequence",
                                object_id)
    assert [r["sequence"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["type"] for r in rows]
