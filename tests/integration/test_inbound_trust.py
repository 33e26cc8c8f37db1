"""Correctly signed webhooks are trusted only as far as they agree with the payment they
name: an inconsistent one (amount above the payment's, another currency, another
account or mode, another PaymentIntent) is refused, recorded, and its payment verified
with Stripe (the simulator) and left correct; reports never show the money it claimed."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from paymentd.db import Database
from paymentd.jobs import reconciler
from paymentd.payments import consistency, verification
from paymentd.webhooks.models import WebhookEvent
from tests.conftest import Hooked
from tests.integration.test_disputes import AUTH, charge_of, dispute_object, paid
from tests.integration.test_webhooks import confirm, eventually, moves, new_payment, signed, status_of

pytestmark = pytest.mark.asyncio


def stripe_intent(hooked: Hooked, intent_id: str) -> dict:
    return httpx.get(f"{hooked.sim.url}/v1/payment_intents/{intent_id}", headers=AUTH).json()


def forged(event_type: str, obj: dict, **envelope: Any) -> bytes:
    """An event signed with the endpoint's real secret: only its content is wrong."""
    return json.dumps({
        "id": f"evt_forged_{uuid.uuid4().hex}", "object": "event", "type": event_type, "created": int(time.time()),
        "livemode": False, "pending_webhooks": 1, "api_version": None, "data": {"object": obj}, **envelope,
    }).encode()


async def deliver(hooked: Hooked, body: bytes) -> str:
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200, response.text
    assert response.json() == {"received": True, "duplicate": False}
    return json.loads(body)["id"]


async def closed(database: Database, event_id: str) -> WebhookEvent | None:
    async with database.transaction() as session:
        row = await session.get(WebhookEvent, event_id)
        return row if row and row.processed_at else None


async def payment_row(database: Database, payment_id: str) -> dict:
    async with database.sql_connection() as conn:
        row = await conn.fetchrow("SELECT status, amount, currency, amount_received, amount_capturable,"
                                  " amount_refunded FROM payments WHERE id = $1", uuid.UUID(payment_id))
    return dict(row)


async def verification_open(database: Database, payment_id: str) -> bool:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM payment_verifications WHERE payment_id = $1",
                                   uuid.UUID(payment_id)) > 0


def intent_reads(hooked: Hooked, intent_id: str) -> int:
    log = httpx.get(f"{hooked.sim.url}/_sim/requests").json()["data"]
    return sum(1 for r in log if r["method"] == "GET" and r["path"] == f"/v1/payment_intents/{intent_id}")


async def report_amounts(api: httpx.AsyncClient) -> list[dict]:
    response = await api.get("/api/reports/summary", params={"group_by": "currency"})
    assert response.status_code == 200, response.text
    return response.json()["totals"]["payments"]["amounts"]


# --------------------------------------------------------------------------- PaymentIntent events


@pytest.mark.parametrize("lie", [
    {"amount_received": 999_999},
    {"currency": "eur"},
    {"amount": 999_999, "amount_received": 999_999},
    {"amount_received": 999_999, "currency": "eur"},
    {"amount_capturable": 5_000},
    {"amount_received": -100},
    {"metadata": {"paymentd_payment_id": str(uuid.UUID(int=7))}},
])
async def test_an_inflated_or_foreign_currency_event_is_refused_and_the_payment_verified(
    hooked: Hooked, api, database, lie: dict
) -> None:
    payment = await paid(api, amount="12.50")
    pi = payment["stripe_payment_intent_id"]
    before = await payment_row(database, payment["id"])
    assert (before["amount_received"], before["currency"]) == (1250, "usd")
    reads_before = intent_reads(hooked, pi)

    obj = {**stripe_intent(hooked, pi), **lie}
    event_id = await deliver(hooked, forged("payment_intent.succeeded", obj))

    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith(consistency.REFUSED), row.outcome
    # In the audit trail, in the refusing transaction, as the event that lied.
    async with database.sql_connection() as conn:
        audited = await conn.fetch(
            "SELECT actor_type, actor_id, outcome, account_id FROM audit_entries"
            " WHERE action = 'webhook.refused' AND object_id = $1", payment["id"])
        account_id = await conn.fetchval("SELECT account_id FROM payments WHERE id = $1", uuid.UUID(payment["id"]))
    assert [(a["actor_type"], a["actor_id"], a["outcome"]) for a in audited] == [("webhook", event_id, "refused")]
    assert audited[0]["account_id"] == account_id
    # Verified with Stripe (one read of the PaymentIntent), its answer applied, the request closed.
    await eventually(lambda: _not(verification_open(database, payment["id"])))
    assert intent_reads(hooked, pi) > reads_before
    assert await payment_row(database, payment["id"]) == before
    assert await report_amounts(api) == [
        {"currency": "usd", "count": 1, "total": "12.50", "received": "12.50", "refunded": "0.00", "net": "12.50"}]


async def _not(check: Any) -> bool:
    return not await check


async def test_a_refused_event_lets_stripes_own_answer_bring_the_payment_up_to_date(
    hooked: Hooked, api, database, webhooks_off
) -> None:
    # Our record is behind (3-D Secure done at Stripe, its webhook lost) when a lie arrives:
    # the lie is refused, and the verification it triggers applies Stripe's truth.
    payment = await new_payment(api)
    response = await confirm(api, payment["id"], "pm_card_threeDSecure2Required")
    assert response.json()["status"] == "requires_action", response.text
    pi = payment["stripe_payment_intent_id"]
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")
    truth = stripe_intent(hooked, pi)
    assert truth["status"] == "succeeded"

    event_id = await deliver(hooked, forged("payment_intent.succeeded", {**truth, "amount_received": 125_000,
                                                                          "currency": "jpy"}))
    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith("refused: inconsistent currency"), row.outcome
    await eventually(lambda: _not(verification_open(database, payment["id"])))
    after = await payment_row(database, payment["id"])
    assert (after["status"], after["currency"], after["amount_received"]) == ("succeeded", "usd", 1250)
    assert moves_to_succeeded(await moves(database, payment["id"])) == ["reconciler"]
    assert [a["currency"] for a in await report_amounts(api)] == ["usd"]


def moves_to_succeeded(history: list[tuple[str | None, str, str]]) -> list[str]:
    return [source for _, to, source in history if to == "succeeded"]


async def test_a_consistent_event_still_applies(hooked: Hooked, api, database) -> None:
    payment = await new_payment(api)
    response = await confirm(api, payment["id"], "pm_card_threeDSecure2Required")
    assert response.json()["status"] == "requires_action", response.text
    pi = payment["stripe_payment_intent_id"]
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")
    await eventually(lambda: _status(database, payment["id"], "succeeded"))
    rows = await eventually(lambda: _all_closed(database, pi))
    assert not any(r.outcome.startswith(consistency.REFUSED) for r in rows)
    assert (await payment_row(database, payment["id"]))["amount_received"] == 1250
    assert not await verification_open(database, payment["id"])


async def _status(database: Database, payment_id: str, wanted: str) -> bool:
    return await status_of(database, payment_id) == wanted


async def _all_closed(database: Database, intent_id: str) -> list[WebhookEvent] | None:
    async with database.transaction() as session:
        rows = list((await session.scalars(
            text("SELECT id FROM webhook_events WHERE payment_intent_id = :pi"), {"pi": intent_id})).all())
        found = [await session.get(WebhookEvent, r) for r in rows]
    return found if found and all(r.processed_at for r in found) else None


@pytest.mark.parametrize(("envelope", "field"), [
    ({"livemode": True}, "mode"),
    ({"account": "acct_1SomeoneElse"}, "account"),
])
async def test_an_event_from_another_account_or_mode_is_refused(
    hooked: Hooked, api, database, envelope: dict, field: str
) -> None:
    payment = await new_payment(api)
    response = await confirm(api, payment["id"], "pm_card_threeDSecure2Required")
    pi = payment["stripe_payment_intent_id"]
    # Perfectly consistent in amount and currency, but not from paymentd's own account/mode.
    obj = {**stripe_intent(hooked, pi), "status": "succeeded", "amount_received": 1250, "amount_capturable": 0}
    event_id = await deliver(hooked, forged("payment_intent.succeeded", obj, **envelope))
    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith(f"refused: inconsistent {field}"), row.outcome
    await eventually(lambda: _not(verification_open(database, payment["id"])))
    assert response.json()["status"] == await status_of(database, payment["id"]) == "requires_action"


async def test_a_payment_intent_event_naming_another_payments_intent_changes_neither(
    hooked: Hooked, api, database
) -> None:
    first, second = await paid(api, amount="10.00"), await paid(api, amount="20.00")
    # Event about `first`'s PaymentIntent that carries `second`'s paymentd id.
    obj = {**stripe_intent(hooked, first["stripe_payment_intent_id"]),
           "metadata": {"paymentd_payment_id": second["id"]}}
    event_id = await deliver(hooked, forged("payment_intent.succeeded", obj))
    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith("refused: inconsistent payment"), row.outcome
    assert (await payment_row(database, first["id"]))["amount_received"] == 1000
    assert (await payment_row(database, second["id"]))["amount_received"] == 2000


# --------------------------------------------------------------------------- refunds and disputes


def refund_object(intent_id: str, amount: int, currency: str = "usd") -> dict:
    return {"id": f"re_forged_{uuid.uuid4().hex[:10]}", "object": "refund", "amount": amount, "currency": currency,
            "payment_intent": intent_id, "status": "succeeded", "reason": None, "failure_reason": None}


@pytest.mark.parametrize(("amount", "currency", "field"), [
    (999_999, "usd", "refund amount"),
    (500, "eur", "currency"),
])
async def test_a_refund_event_beyond_the_payment_is_refused(
    hooked: Hooked, api, database, amount: int, currency: str, field: str
) -> None:
    payment = await paid(api, amount="12.50")
    pi = payment["stripe_payment_intent_id"]
    event_id = await deliver(hooked, forged("refund.created", refund_object(pi, amount, currency)))
    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith(f"refused: inconsistent {field}"), row.outcome
    await eventually(lambda: _not(verification_open(database, payment["id"])))
    after = await payment_row(database, payment["id"])
    assert (after["status"], after["amount_refunded"]) == ("succeeded", 0)
    detail = (await api.get(f"/api/payments/{payment['id']}")).json()
    assert detail["refunds"] == []


async def test_a_second_refund_event_that_would_refund_more_than_was_paid_is_refused(
    hooked: Hooked, api, database
) -> None:
    payment = await paid(api, amount="12.50")
    pi = payment["stripe_payment_intent_id"]
    first = await deliver(hooked, forged("refund.created", refund_object(pi, 1000)))
    assert not (await eventually(lambda: closed(database, first))).outcome.startswith(consistency.REFUSED)
    second = await deliver(hooked, forged("refund.created", refund_object(pi, 1000)))
    row = await eventually(lambda: closed(database, second))
    assert row.outcome.startswith("refused: inconsistent refund amount"), row.outcome
    assert (await payment_row(database, payment["id"]))["amount_refunded"] == 1000


@pytest.mark.parametrize(("amount", "currency", "field"), [
    (4_000_000, "usd", "dispute amount"),
    (1000, "gbp", "currency"),
])
async def test_a_dispute_event_beyond_the_payment_is_refused(
    hooked: Hooked, api, database, amount: int, currency: str, field: str
) -> None:
    payment = await paid(api, amount="40.00")
    pi = payment["stripe_payment_intent_id"]
    obj = dispute_object(pi, charge_of(hooked, pi), "needs_response", amount=amount, currency=currency)
    event_id = await deliver(hooked, forged("charge.dispute.created", obj))
    row = await eventually(lambda: closed(database, event_id))
    assert row.outcome.startswith(f"refused: inconsistent {field}"), row.outcome
    assert await status_of(database, payment["id"]) == "succeeded"
    assert (await api.get(f"/api/payments/{payment['id']}")).json()["disputes"] == []


# --------------------------------------------------------------------------- verification's own paths


async def test_a_verification_the_refusing_job_could_not_finish_is_done_by_the_reconciler(
    hooked: Hooked, api, database, deps
) -> None:
    payment = await paid(api, amount="12.50")
    async with database.sql_transaction() as conn:
        await verification.request(conn, uuid.UUID(payment["id"]), "refused: inconsistent currency (test)", None)
    report = reconciler.SweepReport()
    # Not yet: a fresh request is the refusing job's to finish.
    await reconciler.verify_requested(deps, before=_ago(60), report=report)
    assert report.payments_verified == 0 and await verification_open(database, payment["id"])
    await reconciler.verify_requested(deps, before=_ago(-1), report=report)
    assert report.payments_verified == 1 and not await verification_open(database, payment["id"])


def _ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def test_when_stripes_own_answer_disagrees_the_verification_stays_open_for_a_person(
    hooked: Hooked, api, database, deps
) -> None:
    payment = await paid(api, amount="12.50")
    # Our record says 99.00: Stripe's answer (12.50) cannot be applied over it automatically.
    async with database.sql_transaction() as conn:
        await conn.execute("UPDATE payments SET amount = 9900 WHERE id = $1", uuid.UUID(payment["id"]))
        await verification.request(conn, uuid.UUID(payment["id"]), "refused: inconsistent amount (test)", None)
    assert not await verification.verify(deps.database, deps.provider, uuid.UUID(payment["id"]))
    async with database.sql_connection() as conn:
        row = await conn.fetchrow("SELECT attempts, last_error FROM payment_verifications WHERE payment_id = $1",
                                  uuid.UUID(payment["id"]))
    assert row["attempts"] == 1 and "no consistent answer" in row["last_error"]
    assert (await payment_row(database, payment["id"]))["amount_received"] == 1250


@pytest.mark.parametrize("created", [10**20, -(10**20), 1e308, "soon"])
async def test_a_signed_event_with_an_extreme_timestamp_is_no_500(hooked: Hooked, api, database, created: Any) -> None:
    payment = await paid(api, amount="40.00")
    pi = payment["stripe_payment_intent_id"]
    obj = {**dispute_object(pi, charge_of(hooked, pi), "needs_response"), "created": created,
           "evidence_details": {"due_by": created}}
    body = forged("charge.dispute.created", obj, created=created)
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200, response.text
    row = await eventually(lambda: closed(database, json.loads(body)["id"]))
    assert row.outcome.startswith("applied"), row.outcome
