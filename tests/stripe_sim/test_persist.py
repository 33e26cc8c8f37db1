"""The `state_file` knob: a simulator started again on the same file has the objects,
events and idempotent answers of the one before (persist.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
import stripe

import stripe_sim
from tests.stripe_sim.helpers import make_client


async def test_objects_events_and_idempotent_answers_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    first = await stripe_sim.start_async(state_file=str(state), save_interval_s=0.05)
    try:
        client = make_client(first.url)
        customer = await client.v1.customers.create_async(params={"email": "a@example.com"})
        saved = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": customer.id})
        paid = await client.v1.payment_intents.create_async(
            params={"amount": 1500, "currency": "usd", "customer": customer.id, "payment_method": saved.id,
                    "confirm": True}, options={"idempotency_key": "create-1"})
        declined = await client.v1.payment_methods.create_async(
            params={"type": "card", "card": {"token": "tok_chargeDeclined"}})
        assert paid.status == "succeeded"
        events_before = [e.id for e in (await client.v1.events.list_async(params={"limit": 100})).data]
    finally:
        await first.stop()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600

    second = await stripe_sim.start_async(state_file=str(state))
    try:
        client = make_client(second.url)
        assert (await client.v1.payment_intents.retrieve_async(paid.id)).status == "succeeded"
        refund = await client.v1.refunds.create_async(params={"payment_intent": paid.id})
        assert refund.status == "succeeded" and refund.amount == 1500
        # The saved card still pays for its customer; a declining card still declines.
        again = await client.v1.payment_intents.create_async(
            params={"amount": 700, "currency": "usd", "customer": customer.id, "payment_method": saved.id,
                    "confirm": True})
        assert again.status == "succeeded"
        with pytest.raises(stripe.CardError):
            await client.v1.payment_intents.create_async(
                params={"amount": 700, "currency": "usd", "payment_method": declined.id, "confirm": True})
        listed = [m.id for m in (await client.v1.customers.payment_methods.list_async(customer.id)).data]
        assert listed == [saved.id]
        # The same idempotent request is answered as before the restart, not run again.
        replay = await client.v1.payment_intents.create_async(
            params={"amount": 1500, "currency": "usd", "customer": customer.id, "payment_method": saved.id,
                    "confirm": True}, options={"idempotency_key": "create-1"})
        assert replay.id == paid.id
        events_after = [e.id for e in (await client.v1.events.list_async(params={"limit": 100})).data]
        assert set(events_before) <= set(events_after)
    finally:
        await second.stop()


async def test_an_unreadable_state_file_is_set_aside_and_the_simulator_starts_empty(tmp_path: Path) -> None:
    state = tmp_path / "sim.json"
    state.write_text("{not json")
    handle = await stripe_sim.start_async(state_file=str(state))
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(handle.url + "/_sim/health")).status_code == 200
        assert (tmp_path / "sim.json.unreadable").read_text() == "{not json"
    finally:
        await handle.stop()
