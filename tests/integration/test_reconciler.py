"""The reconciler against the simulator: it finds webhooks that never arrived, confirms
a crash left in flight, and inbox rows nobody applied; every fix has source reconciler."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text

from paymentd.app import SANDBOX_KEY
from paymentd.jobs.reconciler import sweep
from paymentd.payments.models import PaymentAttempt
from paymentd.providers.base import ProviderEvent, ProviderPayment, ProviderStatus
from paymentd.webhooks import inbox
from paymentd.webhooks.models import WebhookEvent
from tests.conftest import Hooked
from tests.integration.test_webhooks import confirm, moves, new_payment, status_of

pytestmark = pytest.mark.asyncio
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}


async def test_webhooks_that_never_arrived_are_found_in_stripes_events(
    hooked: Hooked, api, database, deps, webhooks_off
) -> None:
    payment = await new_payment(api)
    assert (await confirm(api, payment["id"], "pm_card_threeDSecure2Required")).json()["status"] == "requires_action"
    pi = payment["stripe_payment_intent_id"]
    hooked.sim_post(f"/_sim/payment_intents/{pi}/authenticate", outcome="succeed")
    assert await status_of(database, payment["id"]) == "requires_action"  # nobody told paymentd

    report = await sweep(deps)

    assert report.events_missed >= 1, report
    assert await status_of(database, payment["id"]) == "succeeded"
    assert ("requires_action", "succeeded", "reconciler") in await moves(database, payment["id"])
    async with database.transaction() as session:
        rows = (await session.scalars(select(WebhookEvent).where(WebhookEvent.payment_intent_id == pi))).all()
    succeeded = [r for r in rows if r.type == "payment_intent.succeeded"]
    assert len(succeeded) == 1 and succeeded[0].source == "reconciler" and succeeded[0].processed_at

    # Once is enough: the next sweep finds nothing new and moves nothing.
    before = await moves(database, payment["id"])
    again = await sweep(deps)
    assert again.events_missed == 0
    assert await moves(database, payment["id"]) == before


async def test_a_confirm_left_in_flight_by_a_crash_is_settled_with_source_reconciler(
    hooked: Hooked, api, database, deps, webhooks_off
) -> None:
    payment = await new_payment(api, payment_method="pm_card_visa")
    pi = payment["stripe_payment_intent_id"]
    # paymentd wrote its attempt, sent the confirm, and died before recording the answer.
    async with httpx.AsyncClient(base_url=hooked.sim.url, headers=AUTH) as stripe:
        confirmed = (await stripe.post(f"/v1/payment_intents/{pi}/confirm",
                                       data={"payment_method": "pm_card_visa"})).json()
    assert confirmed["status"] == "succeeded", confirmed
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    payment_id = uuid.UUID(payment["id"])
    async with database.transaction() as session:
        session.add(PaymentAttempt(payment_id=payment_id, number=1, payment_method="pm_card_visa",
                                   outcome="pending", created_at=long_ago))
        await session.execute(text("UPDATE payments SET status = 'processing', updated_at = :at, attempt_count = 1 "
                                   "WHERE id = :id"), {"at": long_ago, "id": payment_id})

    report = await sweep(deps)

    assert report.payments_refreshed >= 1, report
    assert await status_of(database, payment["id"]) == "succeeded"
    assert ("processing", "succeeded", "reconciler") in await moves(database, payment["id"])
    async with database.transaction() as session:
        attempt = await session.scalar(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id))
    assert attempt is not None and attempt.outcome == "succeeded" and attempt.finished_at is not None
    # The reconciler only asked; it never confirmed again.
    async with httpx.AsyncClient(base_url=hooked.sim.url) as control:
        log = (await control.get("/_sim/requests")).json()["data"]
    confirms = [r for r in log if r.get("path", "").endswith(f"{pi}/confirm")]
    assert len(confirms) == 1


async def test_a_confirm_that_never_reached_stripe_is_abandoned(hooked: Hooked, api, database, deps) -> None:
    """paymentd wrote its attempt and died before sending the confirm: Stripe shows
    no confirmation, so past the cutoff the attempt is closed and the payment can be
    confirmed again (with a new attempt, hence a new Stripe key)."""
    payment = await new_payment(api, payment_method="pm_card_visa")
    payment_id = uuid.UUID(payment["id"])
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    async with database.transaction() as session:
        session.add(PaymentAttempt(payment_id=payment_id, number=1, payment_method="pm_card_visa",
                                   outcome="pending", created_at=long_ago))
        await session.execute(text("UPDATE payments SET status = 'processing', updated_at = :at, attempt_count = 1 "
                                   "WHERE id = :id"), {"at": long_ago, "id": payment_id})

    report = await sweep(deps)

    # Confirmable again: the reconciler frees it (requires_payment_method), and the late
    # `payment_intent.created` webhook may then align it with Stripe's requires_confirmation.
    assert await status_of(database, payment["id"]) in ("requires_payment_method", "requires_confirmation"), (
        report, await moves(database, payment["id"]))
    assert ("processing", "requires_payment_method", "reconciler") in await moves(database, payment["id"])
    async with database.transaction() as session:
        attempt = await session.scalar(select(PaymentAttempt).where(PaymentAttempt.payment_id == payment_id))
    assert attempt.outcome == "abandoned"
    again = await confirm(api, payment["id"], "pm_card_visa")
    assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text


def _event(intent_id: str, status: ProviderStatus, *, created: datetime) -> ProviderEvent:
    intent = ProviderPayment(
        id=intent_id, status=status, amount=1250, currency="usd", amount_received=1250, amount_capturable=0,
        client_secret=None, payment_method="pm_x", payment_method_types=("card",), capture_method="automatic",
        next_action=None, last_error=None, latest_charge=None, payment_method_details=None, customer=None,
        metadata={},
    )
    return ProviderEvent(id=f"evt_test_{uuid.uuid4().hex}", type=f"payment_intent.{status.value}", created=created,
                         object_type="payment_intent", object=intent, livemode=False, payment_intent_id=intent_id)


async def test_inbox_rows_nobody_applied_are_applied_or_given_up(api, database, deps) -> None:
    user = (await api.post("/api/users", json={"email": "inbox@example.com", "name": "Inbox"})).json()
    ours, theirs = f"pi_ours_{uuid.uuid4().hex[:10]}", f"pi_theirs_{uuid.uuid4().hex[:10]}"
    payment_id = uuid.uuid4()
    async with database.transaction() as session:
        await session.execute(text(
            "INSERT INTO payments (id, account_id, user_id, amount, currency, status, payment_method_types, "
            "stripe_payment_intent_id) SELECT :id, account_id, id, 1250, 'usd', 'processing', ARRAY['card'], :pi "
            "FROM users WHERE id = :user"), {"id": payment_id, "pi": ours, "user": uuid.UUID(user["id"])})
    now = datetime.now(UTC)
    late = _event(ours, ProviderStatus.succeeded, created=now - timedelta(minutes=10))
    foreign = _event(theirs, ProviderStatus.succeeded, created=now - timedelta(days=2))
    for event, age in ((late, timedelta(minutes=10)), (foreign, timedelta(days=2))):
        assert await inbox.store(database, event, source="webhook")  # stored, its job lost
        async with database.transaction() as session:
            await session.execute(text("UPDATE webhook_events SET received_at = :at WHERE id = :id"),
                                  {"at": now - age, "id": event.id})

    report = await sweep(deps)

    assert report.inbox_applied >= 1 and report.inbox_given_up >= 1, report
    assert await status_of(database, str(payment_id)) == "succeeded"
    assert ("processing", "succeeded", "webhook") in await moves(database, str(payment_id))
    async with database.transaction() as session:
        given_up = await session.get(WebhookEvent, foreign.id)
    assert given_up is not None and given_up.outcome == inbox.IGNORED_NO_PAYMENT
