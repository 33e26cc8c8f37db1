"""PaymentIntents through the SDK: status machine, amounts, capture, cancel, update, list."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import event_types


async def create(client: stripe.StripeClient, **params):
    return await client.v1.payment_intents.create_async(params={"amount": 2000, "currency": "usd", **params})


async def test_create_without_method_requires_payment_method(client):
    pi = await create(client, metadata={"order": "42"}, description="Order 42")
    assert pi.id.startswith("pi_")
    assert pi.status == "requires_payment_method"
    assert pi.client_secret.startswith(pi.id + "_secret_")
    assert pi.metadata.to_dict() == {"order": "42"}
    assert pi.amount_received == 0 and pi.latest_charge is None
    assert pi.capture_method == "automatic_async"
    assert pi.automatic_payment_methods.enabled is True
    assert "card" in pi.payment_method_types


async def test_create_with_method_requires_confirmation_then_confirm_succeeds(client):
    pi = await create(client, payment_method="pm_card_visa", payment_method_types=["card"])
    assert pi.status == "requires_confirmation"
    assert pi.payment_method.startswith("pm_") and pi.payment_method != "pm_card_visa"
    confirmed = await client.v1.payment_intents.confirm_async(pi.id, params={"expand": ["latest_charge"]})
    assert confirmed.status == "succeeded"
    assert confirmed.amount_received == 2000
    charge = confirmed.latest_charge
    assert charge.object == "charge" and charge.status == "succeeded" and charge.captured
    assert charge.payment_method == pi.payment_method
    assert charge.payment_method_details.card.last4 == "4242"
    assert charge.payment_method_details.card.brand == "visa"
    assert await event_types(client) == ["payment_intent.created", "charge.succeeded", "payment_intent.succeeded"]


async def test_latest_charge_is_an_id_unless_expanded(client):
    pi = await create(client, payment_method="pm_card_mastercard", confirm=True)
    assert isinstance(pi.latest_charge, str) and pi.latest_charge.startswith("ch_")
    fetched = await client.v1.payment_intents.retrieve_async(pi.id, params={"expand": ["latest_charge"]})
    assert fetched.latest_charge.id == pi.latest_charge
    assert fetched.latest_charge.payment_method_details.card.brand == "mastercard"
    charge = await client.v1.charges.retrieve_async(pi.latest_charge, params={"expand": ["payment_intent"]})
    assert charge.payment_intent.id == pi.id


async def test_manual_capture_full(client):
    pi = await create(client, payment_method="pm_card_amex", capture_method="manual", confirm=True)
    assert pi.status == "requires_capture"
    assert pi.amount_capturable == 2000 and pi.amount_received == 0
    captured = await client.v1.payment_intents.capture_async(pi.id)
    assert captured.status == "succeeded"
    assert captured.amount_received == 2000 and captured.amount_capturable == 0
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.captured and charge.amount_captured == 2000 and charge.amount_refunded == 0
    assert await event_types(client) == ["payment_intent.created", "charge.succeeded",
                                         "payment_intent.amount_capturable_updated", "charge.captured",
                                         "payment_intent.succeeded"]


async def test_partial_capture_releases_the_rest(client):
    pi = await create(client, payment_method="pm_card_visa", capture_method="manual", confirm=True)
    captured = await client.v1.payment_intents.capture_async(pi.id, params={"amount_to_capture": 1500})
    assert captured.amount_received == 1500
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.amount_captured == 1500 and charge.amount_refunded == 500 and not charge.refunded


async def test_capture_more_than_authorized_is_refused(client):
    pi = await create(client, payment_method="pm_card_visa", capture_method="manual", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.capture_async(pi.id, params={"amount_to_capture": 2001})
    assert err.value.code == "amount_too_large" and err.value.param == "amount_to_capture"


async def test_capture_requires_requires_capture(client):
    pi = await create(client, payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.capture_async(pi.id)
    assert err.value.code == "payment_intent_unexpected_state"
    assert err.value.json_body["error"]["payment_intent"]["status"] == "succeeded"


async def test_confirm_twice_is_refused(client):
    pi = await create(client, payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.confirm_async(pi.id)
    assert err.value.code == "payment_intent_unexpected_state"
    assert "status of succeeded" in err.value.user_message


async def test_confirm_without_payment_method_is_refused(client):
    pi = await create(client)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.confirm_async(pi.id)
    assert err.value.code == "payment_intent_unexpected_state"
    assert "missing a payment method" in err.value.user_message


async def test_cancel_with_reason(client):
    pi = await create(client)
    canceled = await client.v1.payment_intents.cancel_async(pi.id, params={"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned"
    assert canceled.canceled_at is not None
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.cancel_async(pi.id)
    assert err.value.code == "payment_intent_unexpected_state"


async def test_cancel_invalid_reason_is_refused(client):
    pi = await create(client)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.cancel_async(pi.id, params={"cancellation_reason": "bored"})
    assert err.value.param == "cancellation_reason"


async def test_cancel_authorized_payment_releases_the_charge(client):
    pi = await create(client, payment_method="pm_card_visa", capture_method="manual", confirm=True)
    canceled = await client.v1.payment_intents.cancel_async(pi.id, params={"cancellation_reason": "duplicate"})
    assert canceled.status == "canceled" and canceled.amount_capturable == 0
    charge = await client.v1.charges.retrieve_async(pi.latest_charge)
    assert charge.refunded and charge.amount_refunded == 2000
    assert "charge.refunded" in await event_types(client)


async def test_cannot_cancel_succeeded(client):
    pi = await create(client, payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.cancel_async(pi.id)
    assert err.value.code == "payment_intent_unexpected_state"


async def test_update_amount_and_metadata(client):
    pi = await create(client, metadata={"a": "1", "b": "2"})
    updated = await client.v1.payment_intents.update_async(
        pi.id, params={"amount": 3000, "metadata": {"a": "", "c": "3"}})
    assert updated.amount == 3000
    assert updated.metadata.to_dict() == {"b": "2", "c": "3"}


async def test_update_amount_after_success_is_refused(client):
    pi = await create(client, payment_method="pm_card_visa", confirm=True)
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.update_async(pi.id, params={"amount": 100})
    assert err.value.code == "payment_intent_unexpected_state" and err.value.param == "amount"
    updated = await client.v1.payment_intents.update_async(pi.id, params={"metadata": {"note": "late"}})
    assert updated.metadata["note"] == "late"


async def test_update_payment_method_then_confirm(client):
    pi = await create(client)
    updated = await client.v1.payment_intents.update_async(pi.id, params={"payment_method": "pm_card_visa"})
    assert updated.status == "requires_confirmation"
    confirmed = await client.v1.payment_intents.confirm_async(pi.id)
    assert confirmed.status == "succeeded"


@pytest.mark.parametrize("amount, currency, code", [
    (49, "usd", "amount_too_small"),
    (29, "gbp", "amount_too_small"),
    (100_000_000, "usd", "amount_too_large"),
])
async def test_amount_limits(client, amount, currency, code):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params={"amount": amount, "currency": currency})
    assert err.value.code == code and err.value.param == "amount"


async def test_amount_too_small_message(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params={"amount": 10, "currency": "usd"})
    assert err.value.user_message == "Amount must be at least $0.50 usd"


async def test_minimum_amounts_are_accepted(client):
    assert (await create(client, amount=50)).amount == 50
    assert (await client.v1.payment_intents.create_async(params={"amount": 50, "currency": "jpy"})).amount == 50


async def test_invalid_currency(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "xyz"})
    assert err.value.param == "currency"
    assert "Invalid currency: xyz" in err.value.user_message


async def test_uppercase_currency_is_normalised(client):
    pi = await client.v1.payment_intents.create_async(params={"amount": 1000, "currency": "EUR"})
    assert pi.currency == "eur"


async def test_method_type_must_be_allowed(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await create(client, payment_method_types=["card"], confirm=True, payment_method_data={
            "type": "us_bank_account", "billing_details": {"name": "J"},
            "us_bank_account": {"routing_number": "110000000", "account_number": "000123456789"}})
    assert err.value.code == "payment_intent_incompatible_payment_method"


async def test_method_currency_mismatch(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await create(client, payment_method_types=["sepa_debit"])
    assert err.value.param == "currency"


async def test_unknown_customer(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await create(client, customer="cus_nope")
    assert err.value.code == "resource_missing" and err.value.param == "customer"
    assert err.value.http_status == 404


async def test_retrieve_missing(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.retrieve_async("pi_missing")
    assert err.value.http_status == 404
    assert err.value.code == "resource_missing" and err.value.param == "intent"
    assert "No such payment_intent: 'pi_missing'" in err.value.user_message


async def test_list_newest_first_with_pagination_and_customer_filter(client):
    customer = await client.v1.customers.create_async(params={"email": "a@example.com"})
    mine = [await create(client, customer=customer.id) for _ in range(3)]
    others = [await create(client) for _ in range(2)]
    page = await client.v1.payment_intents.list_async(params={"customer": customer.id})
    assert [p.id for p in page.data] == [p.id for p in reversed(mine)]
    first = await client.v1.payment_intents.list_async(params={"limit": 2})
    assert [p.id for p in first.data] == [others[1].id, others[0].id] and first.has_more
    second = await client.v1.payment_intents.list_async(params={"limit": 2, "starting_after": first.data[-1].id})
    assert [p.id for p in second.data] == [mine[2].id, mine[1].id]
    back = await client.v1.payment_intents.list_async(params={"limit": 2, "ending_before": mine[1].id})
    assert [p.id for p in back.data] == [others[0].id, mine[2].id]
    everything = [p.id async for p in (await client.v1.payment_intents.list_async(
        params={"limit": 2})).auto_paging_iter()]
    assert len(everything) == 5


async def test_list_limit_out_of_range(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.list_async(params={"limit": 101})
    assert err.value.param == "limit"
