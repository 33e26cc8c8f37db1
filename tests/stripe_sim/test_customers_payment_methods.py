"""Customers and PaymentMethods: CRUD, attach/detach, listing by customer, reuse rules."""

from __future__ import annotations

import pytest
import stripe

from tests.stripe_sim.helpers import event_types


async def test_customer_crud(client):
    customer = await client.v1.customers.create_async(params={
        "email": "jenny@example.com", "name": "Jenny Rosen", "metadata": {"uid": "7"}})
    assert customer.id.startswith("cus_") and customer.email == "jenny@example.com"
    updated = await client.v1.customers.update_async(customer.id, params={"name": "Jenny R.", "metadata": {"uid": ""}})
    assert updated.name == "Jenny R." and updated.metadata.to_dict() == {}
    assert (await client.v1.customers.retrieve_async(customer.id)).name == "Jenny R."
    deleted = await client.v1.customers.delete_async(customer.id)
    assert deleted.deleted is True
    stub = await client.v1.customers.retrieve_async(customer.id)
    assert stub.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.customers.update_async(customer.id, params={"name": "x"})
    assert err.value.code == "resource_missing"
    same = await client.v1.customers.create_async(params={"name": "Same"})
    await client.v1.customers.update_async(same.id, params={"name": "Same"})  # no change, no event
    assert await event_types(client) == ["customer.created", "customer.updated", "customer.deleted",
                                         "customer.created"]


async def test_customer_list_and_email_filter(client):
    a = await client.v1.customers.create_async(params={"email": "a@example.com"})
    b = await client.v1.customers.create_async(params={"email": "b@example.com"})
    assert [c.id for c in (await client.v1.customers.list_async()).data] == [b.id, a.id]
    assert [c.id for c in (await client.v1.customers.list_async(params={"email": "a@example.com"})).data] == [a.id]


async def test_attach_list_detach(client):
    customer = await client.v1.customers.create_async()
    visa = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": customer.id})
    master = await client.v1.payment_methods.attach_async("pm_card_mastercard", params={"customer": customer.id})
    assert visa.customer == customer.id
    listed = await client.v1.payment_methods.list_async(params={"customer": customer.id, "type": "card"})
    assert [m.id for m in listed.data] == [master.id, visa.id]
    nested = await client.v1.customers.payment_methods.list_async(customer.id)
    assert [m.id for m in nested.data] == [master.id, visa.id]
    assert (await client.v1.customers.payment_methods.retrieve_async(customer.id, visa.id)).id == visa.id
    detached = await client.v1.payment_methods.detach_async(visa.id)
    assert detached.customer is None
    nested = await client.v1.customers.payment_methods.list_async(customer.id)
    assert [m.id for m in nested.data] == [master.id]
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.customers.payment_methods.retrieve_async(customer.id, visa.id)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_methods.detach_async(visa.id)
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_methods.attach_async(visa.id, params={"customer": customer.id})
    types = await event_types(client)
    assert types.count("payment_method.attached") == 2 and types[-1] == "payment_method.detached"


async def test_attach_to_another_customer_is_refused(client):
    one = await client.v1.customers.create_async()
    two = await client.v1.customers.create_async()
    method = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": one.id})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.payment_methods.attach_async(method.id, params={"customer": two.id})
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params={
            "amount": 1000, "currency": "usd", "customer": two.id, "payment_method": method.id})
    assert err.value.param == "payment_method"


async def test_attach_declining_card_fails(client):
    customer = await client.v1.customers.create_async()
    with pytest.raises(stripe.CardError) as err:
        await client.v1.payment_methods.attach_async("pm_card_chargeDeclined", params={"customer": customer.id})
    assert err.value.code == "card_declined"
    attached = await client.v1.payment_methods.attach_async("pm_card_chargeCustomerFail",
                                                             params={"customer": customer.id})
    with pytest.raises(stripe.CardError):
        await client.v1.payment_intents.create_async(params={
            "amount": 1000, "currency": "usd", "customer": customer.id, "payment_method": attached.id,
            "confirm": True, "off_session": True})


async def test_attach_to_missing_customer(client):
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": "cus_nope"})
    assert err.value.code == "resource_missing" and err.value.param == "customer"


async def test_used_payment_method_cannot_be_reused_without_customer(client):
    method = await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_visa"}})
    pi = await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "payment_method": method.id, "confirm": True})
    assert pi.status == "succeeded"
    with pytest.raises(stripe.InvalidRequestError) as err:
        await client.v1.payment_intents.create_async(params={
            "amount": 1000, "currency": "usd", "payment_method": method.id, "confirm": True})
    assert "may not be used again" in err.value.user_message


async def test_setup_future_usage_saves_the_card(client):
    customer = await client.v1.customers.create_async()
    pi = await client.v1.payment_intents.create_async(params={
        "amount": 1000, "currency": "usd", "customer": customer.id, "payment_method": "pm_card_visa",
        "setup_future_usage": "off_session", "confirm": True})
    method = await client.v1.payment_methods.retrieve_async(pi.payment_method)
    assert method.customer == customer.id
    again = await client.v1.payment_intents.create_async(params={
        "amount": 500, "currency": "usd", "customer": customer.id, "payment_method": method.id,
        "confirm": True, "off_session": True})
    assert again.status == "succeeded"


async def test_default_payment_method(client):
    customer = await client.v1.customers.create_async()
    method = await client.v1.payment_methods.attach_async("pm_card_visa", params={"customer": customer.id})
    updated = await client.v1.customers.update_async(customer.id, params={
        "invoice_settings": {"default_payment_method": method.id}})
    assert updated.invoice_settings.default_payment_method == method.id
    stranger = await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_amex"}})
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.customers.update_async(customer.id, params={
            "invoice_settings": {"default_payment_method": stranger.id}})


async def test_update_payment_method(client):
    method = await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_visa"}})
    updated = await client.v1.payment_methods.update_async(method.id, params={
        "billing_details": {"name": "Jenny", "address": {"postal_code": "10115"}}, "metadata": {"k": "v"},
        "card": {"exp_month": 3, "exp_year": 2031}})
    assert updated.billing_details.name == "Jenny" and updated.billing_details.address.postal_code == "10115"
    assert updated.card.exp_month == 3 and updated.card.exp_year == 2031
    again = await client.v1.payment_methods.create_async(params={"type": "card", "card": {"token": "tok_visa"}})
    assert again.card.exp_month == 12  # shared test-card details were not changed in place


async def test_retrieving_a_test_method_id_gives_a_new_method(client):
    method = await client.v1.payment_methods.retrieve_async("pm_card_visa")
    assert method.id.startswith("pm_") and method.id != "pm_card_visa" and method.card.last4 == "4242"
