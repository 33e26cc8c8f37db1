"""The webhook inbox keeps only what paymentd applies, and only for a while: payloads are
minimized before they are stored (no billing name, email, address or card fingerprint),
blanked after PAYMENTD_WEBHOOK_RETENTION_DAYS, and the event id stays long enough that a
late redelivery of a purged event is still a duplicate."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from paymentd import crypto
from paymentd.crypto.fields import open_event, seal_event
from paymentd.db import Database
from paymentd.jobs import cleanup
from paymentd.webhooks import inbox
from paymentd.webhooks.codec import event_from_json
from tests.conftest import Hooked
from tests.integration.test_disputes import charge_of, dispute_object, paid
from tests.integration.test_inbound_trust import closed, deliver, forged, stripe_intent
from tests.integration.test_webhooks import eventually, signed

pytestmark = pytest.mark.asyncio

# What a customer's Stripe objects carry that paymentd must never keep.
NAME, EMAIL, FINGERPRINT = "Jenny Secretname", "jenny.secret@example.com", "Xt5EWLLDS7FJjR1c"
STREET, PHONE, MERCHANT_NOTE = "1 Hidden Lane", "+15555550123", "vip-customer-jenny"
PERSONAL = (NAME, EMAIL, FINGERPRINT, STREET, PHONE, MERCHANT_NOTE, "cus_")


def billing() -> dict:
    return {"name": NAME, "email": EMAIL, "phone": PHONE,
            "address": {"line1": STREET, "city": "Berlin", "postal_code": "10115", "country": "DE"}}


def charge(intent_id: str, charge_id: str) -> dict:
    return {"id": charge_id, "object": "charge", "amount": 1250, "currency": "usd", "payment_intent": intent_id,
            "status": "succeeded", "created": int(time.time()), "customer": "cus_SecretCustomer",
            "billing_details": billing(), "receipt_email": EMAIL,
            "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242", "exp_month": 12,
                                                                "exp_year": 2030, "fingerprint": FINGERPRINT}}}


async def stored_payload(database: Database, event_id: str) -> dict | None:
    async with database.sql_connection() as conn:
        raw = await conn.fetchval("SELECT payload::text FROM webhook_events WHERE id = $1", event_id)
    # The object is sealed at rest (crypto/): opened here, as paymentd reads it.
    return open_event(crypto.keyring(), json.loads(raw), event_id) if raw is not None else None


def assert_nothing_personal(payload: dict) -> None:
    text = json.dumps(payload)
    for secret in PERSONAL:
        assert secret not in text, (secret, payload)
    for key in ("billing_details", "receipt_email", "fingerprint", "customer", "evidence", "address"):
        assert f'"{key}"' not in text, (key, payload)


async def test_a_payment_intent_event_is_stored_without_personal_data(hooked: Hooked, api, database) -> None:
    payment = await paid(api, amount="12.50")
    pi = payment["stripe_payment_intent_id"]
    obj = {**stripe_intent(hooked, pi), "latest_charge": charge(pi, charge_of(hooked, pi)),
           "customer": "cus_SecretCustomer", "receipt_email": EMAIL,
           "metadata": {"note": MERCHANT_NOTE, "paymentd_payment_id": payment["id"]},
           "shipping": {"name": NAME, "phone": PHONE, "address": {"line1": STREET}}}
    event_id = await deliver(hooked, forged("payment_intent.succeeded", obj))
    payload = await stored_payload(database, event_id)
    assert_nothing_personal(payload)
    # What the apply path reads is still there: amounts, the charge, the receipt's card label.
    body = payload["object"]
    assert (body["amount"], body["amount_received"], body["currency"]) == (1250, 1250, "usd")
    assert body["metadata"] == {"paymentd_payment_id": payment["id"]}
    assert body["payment_method_details"]["card"]["last4"] == "4242"
    assert body["payment_method_details"]["label"] == "Visa ••••4242"
    row = await eventually(lambda: closed(database, event_id))
    assert not row.outcome.startswith("refused"), row.outcome


async def test_charge_and_dispute_events_are_stored_without_personal_data(hooked: Hooked, api, database) -> None:
    payment = await paid(api, amount="40.00")
    pi = payment["stripe_payment_intent_id"]
    charge_id = charge_of(hooked, pi)
    charge_event = await deliver(hooked, forged("charge.succeeded", charge(pi, charge_id)))
    dispute = {**dispute_object(pi, charge_id, "needs_response"),
               "evidence": {"customer_name": NAME, "customer_email_address": EMAIL, "billing_address": STREET},
               "payment_method_details": {"card": {"brand": "visa", "fingerprint": FINGERPRINT}}}
    dispute_event = await deliver(hooked, forged("charge.dispute.created", dispute))

    charge_payload = await stored_payload(database, charge_event)
    assert_nothing_personal(charge_payload)
    assert charge_payload["object"] == {"id": charge_id, "object": "charge", "amount": 1250, "currency": "usd",
                                        "payment_intent": pi, "status": "succeeded",
                                        "created": charge(pi, charge_id)["created"]}
    dispute_payload = await stored_payload(database, dispute_event)
    assert_nothing_personal(dispute_payload)
    assert dispute_payload["object"]["evidence_details"] == dispute["evidence_details"]
    # Minimized, the dispute still applies.
    await eventually(lambda: closed(database, dispute_event))
    shown = (await api.get(f"/api/payments/{payment['id']}")).json()
    assert shown["status"] == "disputed" and len(shown["disputes"]) == 1


# --------------------------------------------------------------------------- retention


async def age(database: Database, event_id: str, days: float) -> None:
    async with database.sql_transaction() as conn:
        await conn.execute("UPDATE webhook_events SET received_at = clock_timestamp() - make_interval(days => $2)"
                           " WHERE id = $1", event_id, days)


async def exists(database: Database, event_id: str) -> bool:
    async with database.sql_connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM webhook_events WHERE id = $1", event_id) == 1


async def test_retention_purges_old_payloads_and_a_purged_event_is_still_a_duplicate(
    hooked: Hooked, api, database, deps
) -> None:
    payment = await paid(api, amount="12.50")
    pi = payment["stripe_payment_intent_id"]
    body = forged("payment_intent.succeeded", stripe_intent(hooked, pi))
    old = await deliver(hooked, body)
    await eventually(lambda: closed(database, old))
    recent = await deliver(hooked, forged("payment_intent.succeeded", stripe_intent(hooked, pi)))
    await eventually(lambda: closed(database, recent))
    # An old event nobody could apply yet keeps its payload: it still has work to do.
    waiting = f"evt_waiting_{uuid.uuid4().hex}"
    async with database.sql_transaction() as conn:
        await conn.execute("INSERT INTO webhook_events (id, type, created, payment_intent_id, payload, source)"
                           " SELECT $1, type, created, payment_intent_id, payload, source FROM webhook_events"
                           " WHERE id = $2", waiting, old)
        # Sealed for its own row: a payload copied as is would not open under another id.
        await conn.execute("UPDATE webhook_events SET payload = $2::jsonb WHERE id = $1", waiting,
                           json.dumps(seal_event(crypto.keyring(), await stored_payload(database, old), waiting)))
    for event_id in (old, waiting):
        await age(database, event_id, days=31)
    await age(database, recent, days=29)

    purge = await cleanup.purge_webhook_inbox(database, retention_days=30)

    assert purge.payloads_purged >= 1
    assert await stored_payload(database, old) is None and await exists(database, old)
    assert await stored_payload(database, recent) is not None
    assert await stored_payload(database, waiting) is not None
    # Stripe redelivers the purged event: recognized, acknowledged, not applied again.
    async with httpx.AsyncClient(base_url=hooked.server.url) as client:
        again = await client.post("/api/webhooks/stripe", content=body, headers=signed(body, hooked.secret))
    assert again.status_code == 200 and again.json() == {"received": True, "duplicate": True}
    # A job or sweep that reaches the purged row finds it done and needs no payload.
    first_outcome = (await closed(database, old)).outcome
    assert await inbox.apply(deps, old) == first_outcome
    # The reconciler's copy of the same event (listed from Stripe) is a duplicate too.
    listed = event_from_json({**(await stored_payload(database, recent)), "id": old})
    assert await inbox.store(database, listed, source="reconciler") is False
    assert await stored_payload(database, old) is None


async def test_event_ids_are_forgotten_only_after_they_can_no_longer_come_back(hooked: Hooked, api, database) -> None:
    payment = await paid(api, amount="12.50")
    event_id = await deliver(hooked, forged("payment_intent.succeeded",
                                            stripe_intent(hooked, payment["stripe_payment_intent_id"])))
    await eventually(lambda: closed(database, event_id))
    await age(database, event_id, days=cleanup.EVENT_ID_KEEP_DAYS - 1)
    await cleanup.purge_webhook_inbox(database, retention_days=30)
    assert await exists(database, event_id) and await stored_payload(database, event_id) is None
    await age(database, event_id, days=cleanup.EVENT_ID_KEEP_DAYS + 1)
    purge = await cleanup.purge_webhook_inbox(database, retention_days=30)
    assert purge.events_forgotten >= 1 and not await exists(database, event_id)


async def test_a_longer_retention_keeps_payloads_and_ids_longer(hooked: Hooked, api, database) -> None:
    payment = await paid(api, amount="12.50")
    event_id = await deliver(hooked, forged("payment_intent.succeeded",
                                            stripe_intent(hooked, payment["stripe_payment_intent_id"])))
    await eventually(lambda: closed(database, event_id))
    await age(database, event_id, days=200)
    await cleanup.purge_webhook_inbox(database, retention_days=365)
    assert await stored_payload(database, event_id) is not None
