"""Stripe webhooks end to end: the simulator signs and delivers (late, twice, out of
order when its knobs say so) to a paymentd server whose own worker applies them."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from paymentd.app import SANDBOX_KEY
from paymentd.db import Database
from paymentd.payments import consistency, sql
from paymentd.payments.models import PaymentEvent
from paymentd.payments.states import PaymentStatus
from paymentd.providers.base import ProviderEvent, ProviderPayment, ProviderStatus
from paymentd.webhooks import inbox
from paymentd.webhooks.models import WebhookEvent
from stripe_sim import signature_header
from tests.conftest import ROTATED_OUT_SECRET, Hooked

pytestmark = pytest.mark.asyncio


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll an async check until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


@pytest.fixture
def knobs(hooked: Hooked):  # type: ignore[no-untyped-def]
    """Set the simulator's webhook knobs for one test; defaults come back afterwards."""
    defaults = httpx.get(f"{hooked.sim.url}/_sim/config").json()
    changed: set[str] = set()

    def configure(**values: Any) -> None:
        changed.update(values)
        hooked.sim_post("/_sim/config", **values)

    yield configure
    if changed:
        hooked.sim_post("/_sim/config", **{k: defaults[k] for k in changed})


async def new_payment(api: httpx.AsyncClient, **fields: Any) -> dict:
    user = (await api.post("/api/users", json={"email": "hook@example.com", "name": "Hook"})).json()
    # Waits for Stripe's answer however loaded the machine is: the tests read the
    # PaymentIntent id from this response.
    response = await api.post("/api/payments/create", json={"user_id": user["id"], "amount": "12.50", **fields},
                              headers={"Prefer": "wait=10"})
    assert response.status_code == 201, response.text
    assert response.json()["stripe_payment_intent_id"], response.text
    return response.json()


async def confirm(api: httpx.AsyncClient, payment_id: str, method: str) -> httpx.Response:
    return await api.post("/api/payments/confirm", json={"payment_id": payment_id, "payment_method": method})


async def inbox_rows(database: Database, intent_id: str) -> list[WebhookEvent]:
    async with database.transaction() as session:
        rows = await session.scalars(select(WebhookEvent).where(WebhookEvent.payment_intent_id == intent_id))
        return list(rows.all())


async def moves(database: Database, payment_id: str) -> list[tuple[str | None, str, str]]:
    async with database.transaction() as session:
        rows = await session.scalars(
            select(PaymentEvent).where(PaymentEvent.payment_id == uuid.UUID(payment_id)).order_by(PaymentEvent.id)
        )
        return [(e.from_status, e.to_status, e.source) for e in rows.all()]


async def status_of(database: Database, payment_id: str) -> str:
    # From the database, not GET: a GET of a payment in requires_action asks Stripe
    # itself, which would hide whether the webhook did the work.
    async with database.transaction() as session:
        return await session.scalar(text("SELECT status FROM payments WHERE id = :id"), {"id": uuid.UUID(payment_id)})


def deliveries(hooked: Hooked, intent_events: set[str]) -> list[dict]:
    log = httpx.get(f"{hooked.sim.url}/_sim/webhooks").json()["data"]
    return [d for d in log if d["event"] in intent_events]


async def all_processed(database: Database, intent_id: str, at_least: int) -> list[WebhookEvent] | None:
    rows = await inbox_rows(database, intent_id)
    if len(rows) >= at_least and all(r.processed_at is not None for r in rows):
        return rows
    return None


def signed(payload: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    return {"Stripe-Signature": signature_header(payload, secret, timestamp), "Content-Type": "application/json"}


def event_body(event_type: str = "payment_intent.succeeded", obj: dict | None = None) -> bytes:
    return json.dumps({
        "id": f"evt_test_{uuid.uuid4().hex}", "object": "event", "type": event_type, "created": int(time.time()),
        "livemode": False, "pending_webhooks": 1, "api_version": None,
        "data": {"object": obj or {"id": f"pi_unknown_{uuid.uuid4().hex[:10]}", "object": "payment_intent",
                                   "status": "succeeded", "amount": 1250, "currency": "usd"}},
    }).encode()


# --------------------------------------------------------------------------- delivery


async def test_a_webhook_moves_the_payment_once_with_source_webhook(hooked: Hooked, api, database) -> None:
    payment = await new_payment(api)
    response = await confirm(api, payment["id"], "pm_card_threeDSecure2Required")
    assert response.json()["status"] == "requires_action", response.text
    pi = payment["stripe_payment_intent_id"]

    # The customer authenticates on Stripe's page: only a webhook tells paymentd.
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")

    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))
    assert ("requires_action", "succeeded", "webhook") in await moves(database, payment["id"])
    rows = await eventually(lambda: all_processed(database, pi, 1))
    assert {r.source for r in rows} == {"webhook"}
    assert all(r.outcome and (r.outcome.startswith("applied") or r.outcome.startswith("ignored")) for r in rows)


async def _status_is(database: Database, payment_id: str, wanted: str) -> bool:
    return await status_of(database, payment_id) == wanted


async def test_duplicate_deliveries_are_stored_and_applied_once(hooked: Hooked, api, database, knobs) -> None:
    knobs(webhook_duplicate_rate=1.0)
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_threeDSecure2Required")).status_code == 200
    pi = payment["stripe_payment_intent_id"]
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")

    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))
    rows = await eventually(lambda: all_processed(database, pi, 2))
    ids = {r.id for r in rows}
    # Every event arrived twice and was answered 2xx both times ...
    sent = await eventually(lambda: _async(deliveries(hooked, ids)) if len(deliveries(hooked, ids)) >= 2 * len(ids)
                            else _async(None))
    assert all(200 <= d["status"] < 300 for d in sent)
    # ... yet stored once, and the payment moved to succeeded exactly once.
    assert len(rows) == len(ids)
    assert [m for m in await moves(database, payment["id"]) if m[1] == "succeeded"] == [
        ("requires_action", "succeeded", "webhook")
    ]


async def _async(value: Any) -> Any:
    return value


async def test_reordered_events_never_move_a_payment_back(hooked: Hooked, api, database, knobs) -> None:
    # Stripe's events for: a decline, then a card needing 3-D Secure. Delivered newest
    # first, the stale "payment_failed" looks like a legal requires_action ->
    # requires_payment_method move; paymentd must check with Stripe and stay put.
    knobs(webhook_reorder_window_ms=400)
    payment = await new_payment(api)
    declined = await confirm(api, payment["id"], "pm_card_chargeDeclined")
    assert declined.status_code == 402, declined.text
    response = await confirm(api, payment["id"], "pm_card_threeDSecure2Required")
    assert response.json()["status"] == "requires_action", response.text
    pi = payment["stripe_payment_intent_id"]

    wanted = {"payment_intent.payment_failed", "payment_intent.requires_action"}

    async def both_processed() -> list | None:
        # Both confirms' events, whatever else arrived first (a card lookup before the
        # second confirm can let three of the first one's events be processed before it).
        rows = await all_processed(database, pi, 3)
        return rows if rows and {r.type for r in rows} >= wanted else None

    rows = await eventually(both_processed)
    assert {r.type for r in rows} >= wanted
    assert await status_of(database, payment["id"]) == "requires_action"
    assert not [m for m in await moves(database, payment["id"]) if m[2] == "webhook"]
    failed = next(r for r in rows if r.type == "payment_intent.payment_failed")
    assert failed.outcome == "applied: verified with Stripe" or failed.outcome.startswith("ignored: stale")

    # Then the customer authenticates; the late events of that are reordered too.
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")
    await eventually(lambda: _status_is(database, payment["id"], "succeeded"))
    await eventually(lambda: all_processed(database, pi, 4))
    history = await moves(database, payment["id"])
    assert history[-1][1] == "succeeded"
    assert all(m[0] != "succeeded" for m in history)  # nothing left succeeded


async def test_delayed_webhooks_settle_in_the_right_status(hooked: Hooked, api, database, knobs) -> None:
    knobs(webhook_delay_ms=300, webhook_duplicate_rate=0.5, webhook_reorder_window_ms=200)
    payments = [await new_payment(api) for _ in range(4)]
    methods = ["pm_card_visa", "pm_card_threeDSecure2Required", "pm_card_chargeDeclined",
               "pm_card_threeDSecure2Required"]
    for payment, method in zip(payments, methods, strict=True):
        await confirm(api, payment["id"], method)
    hooked.sim_post(f"/_sim/payment_intents/{payments[1]['stripe_payment_intent_id']}/authenticate",
                    outcome="succeed")
    hooked.sim_post(f"/_sim/payment_intents/{payments[3]['stripe_payment_intent_id']}/authenticate",
                    outcome="fail")
    expected = ["succeeded", "succeeded", "requires_payment_method", "requires_payment_method"]
    for payment, wanted in zip(payments, expected, strict=True):
        await eventually(lambda p=payment, w=wanted: _status_is(database, p["id"], w))
        await eventually(lambda p=payment: all_processed(database, p["stripe_payment_intent_id"], 1))
    for payment, wanted in zip(payments, expected, strict=True):
        assert await status_of(database, payment["id"]) == wanted


# --------------------------------------------------------------------------- refused


async def _stored(database: Database, event_id: str) -> bool:
    async with database.transaction() as session:
        return await session.get(WebhookEvent, event_id) is not None


@pytest.mark.parametrize("case", ["forged", "stale", "missing", "garbage"])
async def test_unverified_webhooks_are_refused_and_nothing_is_stored(hooked: Hooked, database, case) -> None:
    body = event_body()
    event_id = json.loads(body)["id"]
    headers = {
        "forged": signed(body, "whsec_someone_else"),
        # The right secret, but signed 10 minutes ago: a replay.
        "stale": signed(body, hooked.secret, timestamp=int(time.time()) - 600),
        "missing": {"Content-Type": "application/json"},
        "garbage": {"Stripe-Signature": "t=abc,v1=zzz", "Content-Type": "application/json"},
    }[case]
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "signature_invalid"
    assert hooked.secret not in response.text
    assert not await _stored(database, event_id)


async def test_a_body_changed_after_signing_is_refused(hooked: Hooked, database) -> None:
    body = event_body()
    headers = signed(body, hooked.secret)
    tampered = body.replace(b'"amount": 1250', b'"amount": 1')
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=tampered, headers=headers)
    assert response.status_code == 400
    assert not await _stored(database, json.loads(body)["id"])


async def test_either_secret_verifies_during_a_rotation(hooked: Hooked, database) -> None:
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        for secret in (ROTATED_OUT_SECRET, hooked.secret):
            body = event_body("charge.dispute.created", {"id": f"dp_{uuid.uuid4().hex[:10]}", "object": "dispute",
                                                         "payment_intent": "pi_not_ours"})
            response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, secret))
            assert response.status_code == 200, response.text
            assert await _stored(database, json.loads(body)["id"])


async def test_refund_and_dispute_events_are_stored_and_set_aside(hooked: Hooked, database) -> None:
    body = event_body("charge.refunded", {"id": f"ch_{uuid.uuid4().hex[:10]}", "object": "charge",
                                          "payment_intent": "pi_whatever", "amount_refunded": 100})
    event_id = json.loads(body)["id"]
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        first = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
        again = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True

    async def processed() -> WebhookEvent | None:
        async with database.transaction() as session:
            row = await session.get(WebhookEvent, event_id)
            return row if row and row.processed_at else None

    row = await eventually(processed)
    assert row.outcome.startswith("ignored")


# --------------------------------------------------------------------------- ordering with our own insert


async def test_an_event_that_beats_the_payment_row_is_applied_once_the_row_exists(
    hooked: Hooked, api, database
) -> None:
    # A PaymentIntent paid at Stripe whose paymentd row is not committed yet (our own
    # insert racing the webhook): created straight at the simulator.
    auth = {"Authorization": f"Bearer {SANDBOX_KEY}"}
    async with httpx.AsyncClient(base_url=hooked.sim.url, headers=auth) as stripe:
        intent = (await stripe.post("/v1/payment_intents", data={
            "amount": "1250", "currency": "usd", "payment_method": "pm_card_visa", "confirm": "true",
            "payment_method_types[]": "card"})).json()
    assert intent["status"] == "succeeded", intent
    rows = await eventually(lambda: _unprocessed_with_attempts(database, intent["id"]))
    assert all(r.processed_at is None for r in rows if r.type.startswith("payment_intent."))

    # The row commits (as the API would after its Stripe call), in `processing`.
    user = (await api.post("/api/users", json={"email": "late@example.com", "name": "Late"})).json()
    payment_id = uuid.uuid4()
    async with database.transaction() as session:
        await session.execute(text(
            "INSERT INTO payments (id, account_id, user_id, amount, currency, status, payment_method_types, "
            "stripe_payment_intent_id) SELECT :id, account_id, id, 1250, 'usd', 'processing', ARRAY['card'], :pi "
            "FROM users WHERE id = :user"), {"id": payment_id, "pi": intent["id"], "user": uuid.UUID(user["id"])})

    await eventually(lambda: _status_is(database, str(payment_id), "succeeded"), timeout=20)
    assert ("processing", "succeeded", "webhook") in await moves(database, str(payment_id))


async def _unprocessed_with_attempts(database: Database, intent_id: str) -> list[WebhookEvent] | None:
    rows = [r for r in await inbox_rows(database, intent_id) if r.type.startswith("payment_intent.")]
    return rows if rows and any(r.attempts >= 1 and r.last_error for r in rows) else None



# --------------------------------------------------------------------------- closed on arrival


async def _jobs_for(database: Database, event_ids: set[str]) -> int:
    async with database.transaction() as session:
        return await session.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'event_id' = ANY(:ids)"),
                                    {"ids": list(event_ids)})


async def _deliver(hooked: Hooked, event_type: str, obj: dict) -> str:
    body = event_body(event_type, obj)
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        response = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert response.status_code == 200 and response.json()["duplicate"] is False, response.text
    return json.loads(body)["id"]


async def _row(database: Database, event_id: str) -> WebhookEvent:
    async with database.transaction() as session:
        return await session.get(WebhookEvent, event_id)


async def test_events_that_bring_nothing_new_are_closed_on_arrival_without_a_job(hooked: Hooked, api, database,
                                                                                   knobs) -> None:
    # The everyday case: our own calls already recorded what Stripe's events then report
    # (delivered a little late here, so that they surely come after our own writes).
    knobs(webhook_delay_ms=300)
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_visa")).json()["status"] == "succeeded"
    pi = payment["stripe_payment_intent_id"]

    async def both_stored() -> list[WebhookEvent] | None:
        rows = [r for r in await all_processed(database, pi, 1) or () if r.type.startswith("payment_intent.")]
        return rows if {r.type for r in rows} == {"payment_intent.created", "payment_intent.succeeded"} else None

    rows = await eventually(both_stored)
    outcomes = {r.type: r.outcome for r in rows}
    assert outcomes["payment_intent.succeeded"] == inbox.NOTHING_NEW
    # `created` says requires_payment_method: nothing new, or behind the payment by then.
    assert outcomes["payment_intent.created"] in {
        inbox.NOTHING_NEW, "ignored: stale (requires_payment_method reported, payment is succeeded)"}
    assert await _jobs_for(database, {r.id for r in rows}) == 0
    assert [m[2] for m in await moves(database, payment["id"])] == ["api", "api"]


async def test_a_move_backwards_is_closed_on_arrival_and_news_still_goes_to_a_job(hooked: Hooked, api, database) -> None:
    paid = await new_payment(api)
    assert (await confirm(api, paid["id"], "pm_card_visa")).json()["status"] == "succeeded"
    backwards = await _deliver(hooked, "payment_intent.created", {
        "id": paid["stripe_payment_intent_id"], "object": "payment_intent", "status": "requires_payment_method",
        "amount": 1250, "currency": "usd"})
    row = await _row(database, backwards)
    assert row.processed_at is not None  # as the answer went out
    assert row.outcome == "ignored: stale (requires_payment_method reported, payment is succeeded)"
    assert await _jobs_for(database, {backwards}) == 0

    # Canceled at Stripe (from its dashboard, say): news, applied by the job.
    open_payment = await new_payment(api)
    news = await _deliver(hooked, "payment_intent.canceled", {
        "id": open_payment["stripe_payment_intent_id"], "object": "payment_intent", "status": "canceled",
        "amount": 1250, "currency": "usd"})
    await eventually(lambda: _status_is(database, open_payment["id"], "canceled"))
    assert ("requires_payment_method", "canceled", "webhook") in await moves(database, open_payment["id"])
    assert (await _row(database, news)).outcome == inbox.APPLIED
    assert await _jobs_for(database, {news}) == 1


def _snapshot(intent_id: str, status: ProviderStatus, *, amount_received: int) -> ProviderEvent:
    intent = ProviderPayment(
        id=intent_id, status=status, amount=1250, currency="usd", amount_received=amount_received,
        amount_capturable=0, client_secret=None, payment_method=None, payment_method_types=("card",),
        capture_method="automatic", next_action=None, last_error=None, latest_charge=None,
        payment_method_details=None, customer=None, metadata={},
    )
    return ProviderEvent(id=f"evt_test_{uuid.uuid4().hex}", type="payment_intent.test", created=datetime.now(UTC),
                         object_type="payment_intent", object=intent, livemode=False, payment_intent_id=intent_id)


async def _payment_state(database: Database, payment_id: uuid.UUID) -> tuple:
    async with database.sql_transaction() as conn:
        # As paymentd reads it (sealed columns opened): a row inserted in plaintext here
        # is sealed by its first save, a change of form and not of content.
        row = sql.fields(await sql.payment(conn, payment_id))
        moved = await conn.fetchval("SELECT count(*) FROM payment_events WHERE payment_id = $1", payment_id)
    return {k: v for k, v in row.items() if k != "updated_at"}, moved


@pytest.mark.parametrize("current", list(PaymentStatus))
async def test_whatever_is_closed_on_arrival_the_job_would_have_left_unchanged(
    hooked: Hooked, api, database, deps, current: PaymentStatus
) -> None:
    # Every report about a payment in `current`: where the arrival says "nothing to
    # apply", the job itself, run on the same event, must change nothing and say the same.
    user = (await api.post("/api/users", json={"email": "matrix@example.com", "name": "Matrix"})).json()
    judged = 0
    for reported in ProviderStatus:
        for amount_received in (0, 1250):
            payment_id, intent_id = uuid.uuid4(), f"pi_matrix_{uuid.uuid4().hex[:12]}"
            async with database.transaction() as session:
                await session.execute(text(
                    "INSERT INTO payments (id, account_id, user_id, amount, currency, status, payment_method_types, "
                    "stripe_payment_intent_id) SELECT :id, account_id, id, 1250, 'usd', :status, ARRAY['card'], :pi "
                    "FROM users WHERE id = :user"),
                    {"id": payment_id, "status": current.value, "pi": intent_id, "user": uuid.UUID(user["id"])})
            event = _snapshot(intent_id, reported, amount_received=amount_received)
            async with database.sql_transaction() as conn:
                verdict = (await inbox._judge(conn, event, consistency.Origin(livemode=False))).outcome
            if verdict is None:
                continue
            judged += 1
            before = await _payment_state(database, payment_id)
            assert await inbox.store(database, event, source="webhook")
            outcome = await inbox.apply(deps, event.id)
            assert outcome == (inbox.APPLIED if verdict == inbox.NOTHING_NEW else verdict), (reported, verdict)
            assert await _payment_state(database, payment_id) == before, (reported, verdict)
    assert judged > 0
