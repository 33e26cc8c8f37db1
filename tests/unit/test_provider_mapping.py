"""Stripe JSON and SDK errors -> paymentd's neutral provider types, without any HTTP.

The payloads follow the shapes of `payment_intent`, `refund`, `payment_method`, `charge` and
`event` in Stripe's OpenAPI description (shared/stripe/openapi.json).
"""

from __future__ import annotations

import copy
import json
import time
from datetime import UTC, datetime

import aiohttp
import pytest
import stripe

from paymentd.providers import (
    PaymentProvider,
    ProviderAuthError,
    ProviderDeclined,
    ProviderError,
    ProviderIdempotencyError,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderRefund,
    ProviderStatus,
    ProviderUnavailable,
    WebhookSignatureError,
)
from paymentd.providers.stripe import (
    StripeProvider,
    map_stripe_error,
    payment_method_label,
    to_payment_method_info,
    to_provider_event,
    to_provider_payment,
    to_provider_refund,
)

CREATED = 1_767_225_600  # 2026-01-01T00:00:00Z

PM_CARD = {
    "id": "pm_1QabcVisa",
    "object": "payment_method",
    "billing_details": {"address": None, "email": None, "name": None, "phone": None},
    "card": {
        "brand": "visa",
        "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
        "country": "US",
        "exp_month": 12,
        "exp_year": 2034,
        "fingerprint": "Xt5EWLLDS7FJjR1c",
        "funding": "credit",
        "last4": "4242",
        "networks": {"available": ["visa"], "preferred": None},
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    },
    "created": CREATED,
    "customer": "cus_Q1abc",
    "livemode": False,
    "metadata": {},
    "type": "card",
}

PM_SEPA = {
    "id": "pm_1QabcSepa",
    "object": "payment_method",
    "billing_details": {"email": "jenny@example.com", "name": "Jenny Rosen"},
    "created": CREATED,
    "customer": None,
    "livemode": False,
    "metadata": {},
    "sepa_debit": {
        "bank_code": "37040044",
        "branch_code": "",
        "country": "DE",
        "fingerprint": "vifs0Ho7vwRn1Miu",
        "generated_from": {"charge": None, "setup_attempt": None},
        "last4": "3000",
    },
    "type": "sepa_debit",
}

CHARGE = {
    "id": "ch_3QabcCharge",
    "object": "charge",
    "amount": 1999,
    "amount_captured": 1999,
    "amount_refunded": 0,
    "billing_details": {"address": None, "email": None, "name": None, "phone": None},
    "captured": True,
    "created": CREATED,
    "currency": "usd",
    "customer": "cus_Q1abc",
    "disputed": False,
    "livemode": False,
    "metadata": {},
    "outcome": {"network_status": "approved_by_network", "reason": None, "risk_level": "normal", "seller_message": "Payment complete.", "type": "authorized"},
    "paid": True,
    "payment_intent": "pi_3QabcIntent",
    "payment_method": "pm_1QabcVisa",
    "payment_method_details": {
        "card": {
            "brand": "visa",
            "checks": {"cvc_check": "pass"},
            "country": "US",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": "Xt5EWLLDS7FJjR1c",
            "funding": "credit",
            "last4": "4242",
            "network": "visa",
            "three_d_secure": None,
            "wallet": None,
        },
        "type": "card",
    },
    "refunded": False,
    "status": "succeeded",
}

PI_CREATED = {
    "id": "pi_3QabcIntent",
    "object": "payment_intent",
    "amount": 1999,
    "amount_capturable": 0,
    "amount_details": {"tip": {}},
    "amount_received": 0,
    "automatic_payment_methods": None,
    "canceled_at": None,
    "cancellation_reason": None,
    "capture_method": "automatic",
    "client_secret": "pi_3QabcIntent_secret_s3cr3t",
    "confirmation_method": "automatic",
    "created": CREATED,
    "currency": "usd",
    "customer": "cus_Q1abc",
    "description": "Order 42",
    "last_payment_error": None,
    "latest_charge": None,
    "livemode": False,
    "metadata": {"payment_id": "0b7c6a6e-5b1e-4b8f-9b57-3f0d2c1d9e10"},
    "next_action": None,
    "payment_method": None,
    "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
    "payment_method_types": ["card"],
    "processing": None,
    "receipt_email": None,
    "status": "requires_payment_method",
}


def pi(**changes):
    data = copy.deepcopy(PI_CREATED)
    data.update(changes)
    return data


# --------------------------------------------------------------------------- payment intents


def test_created_payment_intent_maps_every_field():
    p = to_provider_payment(PI_CREATED)
    assert p == ProviderPayment(
        id="pi_3QabcIntent",
        status=ProviderStatus.requires_payment_method,
        amount=1999,
        currency="usd",
        amount_received=0,
        amount_capturable=0,
        client_secret="pi_3QabcIntent_secret_s3cr3t",
        payment_method=None,
        payment_method_types=("card",),
        capture_method="automatic",
        next_action=None,
        last_error=None,
        latest_charge=None,
        payment_method_details=None,
        customer="cus_Q1abc",
        metadata={"payment_id": "0b7c6a6e-5b1e-4b8f-9b57-3f0d2c1d9e10"},
    )


def test_client_secret_stays_out_of_repr():
    assert "s3cr3t" not in repr(to_provider_payment(PI_CREATED))


def test_succeeded_with_expanded_charge_gives_receipt_details():
    p = to_provider_payment(
        pi(status="succeeded", amount_received=1999, payment_method="pm_1QabcVisa", latest_charge=CHARGE)
    )
    assert p.status is ProviderStatus.succeeded
    assert p.amount_received == 1999
    assert p.latest_charge == "ch_3QabcCharge"
    details = p.payment_method_details
    assert details is not None
    assert details.id == "pm_1QabcVisa"
    assert details.type == "card"
    assert details.card is not None
    assert (details.card.brand, details.card.last4) == ("visa", "4242")
    assert (details.card.exp_month, details.card.exp_year) == (12, 2034)
    assert details.label == "Visa ••••4242"


def test_unexpanded_charge_is_just_an_id():
    p = to_provider_payment(pi(status="succeeded", latest_charge="ch_3QabcCharge"))
    assert p.latest_charge == "ch_3QabcCharge"
    assert p.payment_method_details is None


def test_expanded_payment_method_is_used_when_there_is_no_charge_yet():
    p = to_provider_payment(pi(status="requires_confirmation", payment_method=PM_CARD))
    assert p.payment_method == "pm_1QabcVisa"
    assert p.payment_method_details is not None
    assert p.payment_method_details.label == "Visa ••••4242"


def test_expanded_customer_is_reduced_to_its_id():
    p = to_provider_payment(pi(customer={"id": "cus_Q1abc", "object": "customer", "email": None}))
    assert p.customer == "cus_Q1abc"


def test_requires_action_passes_next_action_through_unchanged():
    next_action = {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://hooks.stripe.com/3d_secure_2/hosted?x=1", "source": "src_1Qabc"},
    }
    p = to_provider_payment(pi(status="requires_action", payment_method="pm_card_threeDSecure2Required", next_action=next_action))
    assert p.status is ProviderStatus.requires_action
    assert p.next_action == next_action


def test_manual_capture_amounts():
    p = to_provider_payment(pi(status="requires_capture", capture_method="manual", amount_capturable=1999, latest_charge=CHARGE))
    assert p.capture_method == "manual"
    assert p.amount_capturable == 1999
    assert p.amount_received == 0


def test_decline_last_payment_error():
    error = {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "generic_decline",
        "message": "Your card was declined.",
        "charge": "ch_3QabcCharge",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "payment_method": PM_CARD,
    }
    p = to_provider_payment(pi(status="requires_payment_method", last_payment_error=error, latest_charge="ch_3QabcCharge"))
    assert p.last_error is not None
    assert p.last_error.code == "card_declined"
    assert p.last_error.decline_code == "generic_decline"
    assert p.last_error.message == "Your card was declined."
    assert p.last_error.payment_method == "pm_1QabcVisa"
    assert p.last_error.type == "card_error"


@pytest.mark.parametrize("status", ["requires_source", "requires_source_action", "something_new", None])
def test_unknown_status_is_unknown(status):
    assert to_provider_payment(pi(status=status)).status is ProviderStatus.unknown


@pytest.mark.parametrize("status", [s.value for s in ProviderStatus if s is not ProviderStatus.unknown])
def test_every_known_status_maps_to_itself(status):
    assert to_provider_payment(pi(status=status)).status == status


def test_currency_is_lower_case_and_metadata_is_strings():
    p = to_provider_payment(pi(currency="EUR", metadata={"attempt": 2}))
    assert p.currency == "eur"
    assert p.metadata == {"attempt": "2"}


# --------------------------------------------------------------------------- refunds

REFUND = {
    "id": "re_3QabcRefund",
    "object": "refund",
    "amount": 500,
    "balance_transaction": "txn_3QabcTxn",
    "charge": "ch_3QabcCharge",
    "created": CREATED,
    "currency": "usd",
    "destination_details": {"card": {"reference_status": "pending", "type": "refund"}, "type": "card"},
    "metadata": {"refund_id": "r-1"},
    "payment_intent": "pi_3QabcIntent",
    "reason": "requested_by_customer",
    "receipt_number": None,
    "source_transfer_reversal": None,
    "status": "succeeded",
    "transfer_reversal": None,
}


def test_refund():
    assert to_provider_refund(REFUND) == ProviderRefund(
        id="re_3QabcRefund",
        payment_id="pi_3QabcIntent",
        amount=500,
        currency="usd",
        status="succeeded",
        failure_reason=None,
        reason="requested_by_customer",
    )


def test_failed_refund_keeps_its_failure_reason():
    r = to_provider_refund({**REFUND, "status": "failed", "failure_reason": "expired_or_canceled_card"})
    assert (r.status, r.failure_reason) == ("failed", "expired_or_canceled_card")


def test_refund_without_status_is_pending_and_expanded_intent_gives_its_id():
    r = to_provider_refund({**REFUND, "status": None, "payment_intent": PI_CREATED})
    assert r.status == "pending"
    assert r.payment_id == "pi_3QabcIntent"


# --------------------------------------------------------------------------- payment methods


def test_card_payment_method():
    info = to_payment_method_info(PM_CARD)
    assert info.id == "pm_1QabcVisa"
    assert info.type == "card"
    assert info.customer == "cus_Q1abc"
    assert info.created == datetime(2026, 1, 1, tzinfo=UTC)
    assert info.card is not None and info.card.last4 == "4242"
    assert info.label == "Visa ••••4242"


def test_sepa_payment_method_has_a_label_and_no_card():
    info = to_payment_method_info(PM_SEPA)
    assert info.card is None
    assert info.customer is None
    assert info.label == "SEPA Direct Debit ••••3000"


@pytest.mark.parametrize(
    ("type_", "details", "label"),
    [
        ("card", {"brand": "amex", "last4": "8431"}, "American Express ••••8431"),
        ("us_bank_account", {"bank_name": "STRIPE TEST BANK", "last4": "6789"}, "STRIPE TEST BANK ••••6789"),
        ("ideal", {"bank": "ing"}, "iDEAL"),
        ("klarna", None, "Klarna"),
    ],
)
def test_labels(type_, details, label):
    assert payment_method_label(type_, details) == label


# --------------------------------------------------------------------------- events


def event(type_, obj, **extra):
    return {
        "id": "evt_3QabcEvent",
        "object": "event",
        "api_version": "2025-10-15",
        "created": CREATED,
        "data": {"object": obj, **extra},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_abc", "idempotency_key": "pay-1:confirm:1"},
        "type": type_,
    }


def test_payment_intent_event_carries_a_neutral_payment():
    ev = to_provider_event(event("payment_intent.succeeded", pi(status="succeeded", latest_charge="ch_3QabcCharge")))
    assert ev.id == "evt_3QabcEvent"
    assert ev.type == "payment_intent.succeeded"
    assert ev.created == datetime(2026, 1, 1, tzinfo=UTC)
    assert ev.object_type == "payment_intent"
    assert isinstance(ev.object, ProviderPayment)
    assert ev.object.status is ProviderStatus.succeeded
    assert ev.payment_intent_id == "pi_3QabcIntent"
    assert ev.livemode is False


def test_refund_event_carries_a_neutral_refund():
    ev = to_provider_event(event("refund.updated", REFUND, previous_attributes={"status": "pending"}))
    assert isinstance(ev.object, ProviderRefund)
    assert ev.payment_intent_id == "pi_3QabcIntent"


def test_charge_and_dispute_events_name_their_payment_intent():
    charge = to_provider_event(event("charge.refunded", {**CHARGE, "refunded": True, "amount_refunded": 1999}))
    assert charge.object_type == "charge"
    assert isinstance(charge.object, dict)
    assert charge.payment_intent_id == "pi_3QabcIntent"
    dispute = {"id": "dp_1Qabc", "object": "dispute", "amount": 1999, "charge": "ch_3QabcCharge", "currency": "usd", "payment_intent": "pi_3QabcIntent", "reason": "fraudulent", "status": "needs_response"}
    ev = to_provider_event(event("charge.dispute.created", dispute))
    assert (ev.object_type, ev.payment_intent_id) == ("dispute", "pi_3QabcIntent")


def test_unrelated_event_has_no_payment_intent():
    ev = to_provider_event(event("customer.created", {"id": "cus_Q1abc", "object": "customer"}))
    assert ev.payment_intent_id is None
    assert ev.object == {"id": "cus_Q1abc", "object": "customer"}


def test_event_with_unknown_payment_status():
    ev = to_provider_event(event("payment_intent.partially_funded", pi(status="requires_funding")))
    assert isinstance(ev.object, ProviderPayment)
    assert ev.object.status is ProviderStatus.unknown


# --------------------------------------------------------------------------- errors

HEADERS = {"request-id": "req_Qabc123"}


def body(**error):
    return {"error": error}


def test_card_error_becomes_declined_with_the_payment_after_it():
    declined_pi = pi(
        status="requires_payment_method",
        latest_charge="ch_3QabcCharge",
        last_payment_error={"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds.", "payment_method": PM_CARD},
    )
    json_body = body(
        type="card_error",
        code="card_declined",
        decline_code="insufficient_funds",
        message="Your card has insufficient funds.",
        charge="ch_3QabcCharge",
        payment_intent=declined_pi,
        payment_method=PM_CARD,
    )
    exc = stripe.CardError("Your card has insufficient funds.", None, "card_declined", json.dumps(json_body), 402, json_body, HEADERS)
    err = map_stripe_error(exc)
    assert isinstance(err, ProviderDeclined)
    assert err.code == "card_declined"
    assert err.decline_code == "insufficient_funds"
    assert err.request_id == "req_Qabc123"
    assert err.http_status == 402
    assert err.payment is not None
    assert err.payment.status is ProviderStatus.requires_payment_method
    assert err.payment.last_error is not None and err.payment.last_error.decline_code == "insufficient_funds"


def test_card_error_without_payment_intent():
    json_body = body(type="card_error", code="expired_card", message="Your card has expired.", param="exp_month")
    err = map_stripe_error(stripe.CardError("Your card has expired.", "exp_month", "expired_card", None, 402, json_body, HEADERS))
    assert isinstance(err, ProviderDeclined)
    assert err.payment is None and err.decline_code is None


def test_card_error_with_a_malformed_payment_intent_is_still_a_decline():
    json_body = body(type="card_error", code="card_declined", decline_code="generic_decline", message="Your card was declined.", payment_intent={"id": "pi_1"})
    err = map_stripe_error(stripe.CardError("Your card was declined.", None, "card_declined", None, 402, json_body, HEADERS))
    assert isinstance(err, ProviderDeclined)
    assert err.decline_code == "generic_decline" and err.payment is None


def test_invalid_request():
    json_body = body(type="invalid_request_error", code="parameter_invalid_integer", param="amount", message="Invalid integer: abc")
    err = map_stripe_error(stripe.InvalidRequestError("Invalid integer: abc", "amount", "parameter_invalid_integer", None, 400, json_body, HEADERS))
    assert type(err) is ProviderInvalidRequest
    assert (err.param, err.code, err.http_status) == ("amount", "parameter_invalid_integer", 400)


def test_invalid_state_is_invalid_request():
    json_body = body(type="invalid_request_error", code="payment_intent_unexpected_state", message="This PaymentIntent's amount could not be updated because it has a status of canceled.")
    err = map_stripe_error(stripe.InvalidRequestError(json_body["error"]["message"], None, "payment_intent_unexpected_state", None, 400, json_body, HEADERS))
    assert type(err) is ProviderInvalidRequest


def test_key_reused_with_other_params_is_an_idempotency_error():
    json_body = body(type="idempotency_error", message="Keys for idempotent requests can only be used with the same parameters they were first used with.")
    err = map_stripe_error(stripe.IdempotencyError(json_body["error"]["message"], None, 400, json_body, HEADERS))
    assert type(err) is ProviderIdempotencyError
    assert err.request_id == "req_Qabc123"


def test_key_still_in_flight_is_a_transient_conflict():
    json_body = body(type="idempotency_error", code="idempotency_key_in_use", message="There is currently another in-progress request using this Stripe API idempotency key.")
    err = map_stripe_error(stripe.APIError(json_body["error"]["message"], None, 409, json_body, HEADERS))
    assert isinstance(err, ProviderUnavailable) and err.kind == "conflict"


@pytest.mark.parametrize("status", [409, 429])
def test_lock_timeout_is_a_transient_conflict(status):
    json_body = body(type="invalid_request_error", code="lock_timeout", message="This object cannot be accessed right now because another API request or Stripe process is currently accessing it.")
    cls = stripe.RateLimitError if status == 429 else stripe.APIError
    err = map_stripe_error(cls(json_body["error"]["message"], None, status, json_body, HEADERS))
    assert isinstance(err, ProviderUnavailable) and err.kind == "conflict"


def test_rate_limited_with_retry_after():
    json_body = body(type="invalid_request_error", code="rate_limit", message="Too many requests hit the API too quickly.")
    err = map_stripe_error(stripe.RateLimitError("Too many requests", None, 429, json_body, {**HEADERS, "Retry-After": "2"}))
    assert isinstance(err, ProviderUnavailable)
    assert (err.kind, err.retry_after, err.http_status) == ("rate_limited", 2.0, 429)


@pytest.mark.parametrize("cls", [stripe.AuthenticationError, stripe.PermissionError])
def test_auth_errors(cls):
    status = 401 if cls is stripe.AuthenticationError else 403
    json_body = body(type="invalid_request_error", message="Invalid API Key provided: sk_test_****1234")
    err = map_stripe_error(cls(json_body["error"]["message"], None, status, json_body, HEADERS))
    assert type(err) is ProviderAuthError


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status):
    json_body = body(type="api_error", message="Something went wrong on Stripe's end.")
    err = map_stripe_error(stripe.APIError(json_body["error"]["message"], None, status, json_body, HEADERS))
    assert isinstance(err, ProviderUnavailable) and err.kind == "server"
    assert err.request_id == "req_Qabc123"


def test_unparseable_response_is_a_server_error():
    err = map_stripe_error(stripe.APIError("Invalid response body from API: <html>", b"<html>", 502, None, {}))
    assert isinstance(err, ProviderUnavailable) and err.kind == "server"


def _connection_error(cause: Exception) -> stripe.APIConnectionError:
    try:
        try:
            raise cause
        except Exception as e:
            raise stripe.APIConnectionError("Unexpected error communicating with Stripe.", should_retry=True) from e
    except stripe.APIConnectionError as exc:
        return exc


def test_timeout_and_connection_errors():
    # What aiohttp raises under the SDK's client: a read timeout, the whole call's timeout, a drop.
    for cause in (aiohttp.ServerTimeoutError("timed out"), TimeoutError()):
        timeout = map_stripe_error(_connection_error(cause))
        assert isinstance(timeout, ProviderUnavailable) and timeout.kind == "timeout"
    dropped = map_stripe_error(_connection_error(aiohttp.ServerDisconnectedError()))
    assert isinstance(dropped, ProviderUnavailable) and dropped.kind == "connection"


def test_anything_else_is_still_a_provider_error():
    err = map_stripe_error(stripe.StripeError("odd", None, 418, None, {}))
    assert type(err) is ProviderError
    assert err.http_status == 418


# --------------------------------------------------------------------------- webhooks (no HTTP)

SECRET_OLD = "whsec_old_0123456789"
SECRET_NEW = "whsec_new_9876543210"


def signed(payload: str, secret: str, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=at or int(time.time()))


@pytest.fixture
def provider():
    return StripeProvider("sk_test_unit", webhook_secrets=[SECRET_NEW, SECRET_OLD])


PAYLOAD = json.dumps(event("payment_intent.succeeded", pi(status="succeeded")))


def test_provider_satisfies_the_protocol(provider):
    assert isinstance(provider, PaymentProvider)
    assert provider.name == "stripe" and provider.sandbox is False


def test_webhook_verified_with_either_secret(provider):
    for secret in (SECRET_NEW, SECRET_OLD):
        ev = provider.parse_webhook(PAYLOAD.encode(), signed(PAYLOAD, secret))
        assert ev.type == "payment_intent.succeeded"
        assert isinstance(ev.object, ProviderPayment)


def test_webhook_with_unknown_secret_is_refused(provider):
    with pytest.raises(WebhookSignatureError) as info:
        provider.parse_webhook(PAYLOAD.encode(), signed(PAYLOAD, "whsec_attacker"))
    assert info.value.code == "signature_mismatch"


def test_webhook_tampered_body_is_refused(provider):
    header = signed(PAYLOAD, SECRET_NEW)
    with pytest.raises(WebhookSignatureError):
        provider.parse_webhook(PAYLOAD.replace("1999", "1").encode(), header)


def test_stale_webhook_is_refused(provider):
    header = signed(PAYLOAD, SECRET_NEW, at=int(time.time()) - 301)
    with pytest.raises(WebhookSignatureError) as info:
        provider.parse_webhook(PAYLOAD.encode(), header)
    assert info.value.code == "timestamp_outside_tolerance"


@pytest.mark.parametrize("header", ["", "garbage", "t=notanumber,v1=abc", "t=1767225600"])
def test_malformed_signature_header_is_refused(provider, header):
    with pytest.raises(WebhookSignatureError):
        provider.parse_webhook(PAYLOAD.encode(), header)


def test_signed_body_that_is_not_an_event_is_refused(provider):
    with pytest.raises(WebhookSignatureError) as info:
        provider.parse_webhook(b"[1, 2]", signed("[1, 2]", SECRET_NEW))
    assert info.value.code == "malformed_payload"


def test_no_secret_configured_refuses_everything():
    with pytest.raises(WebhookSignatureError):
        StripeProvider("sk_test_unit").parse_webhook(PAYLOAD.encode(), signed(PAYLOAD, SECRET_NEW))


async def test_mutating_call_without_idempotency_key_never_reaches_stripe(provider):
    # The SDK would invent a random key; an empty one must fail before any request.
    with pytest.raises(ValueError):
        await provider.cancel_payment("pi_3QabcIntent", reason=None, idempotency_key="")

