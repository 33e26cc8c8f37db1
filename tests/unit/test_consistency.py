"""The consistency rules (payments/consistency.py) and the cursor and instant checks,
without I/O: what a processor report may say about a payment, and what a caller's
cursor may hold."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import pytest

from paymentd.config import Settings
from paymentd.errors import InvalidRequest
from paymentd.instants import utc_instant
from paymentd.payments import consistency
from paymentd.payments.models import Payment
from paymentd.payments.repository import decode_cursor, encode_cursor
from paymentd.providers.base import ProviderEvent, ProviderPayment, ProviderRefund, ProviderStatus
from paymentd.providers.stripe import minimized, to_provider_event

PAYMENT_ID = uuid.uuid4()


def payment(**fields: object) -> Payment:
    values = {"id": PAYMENT_ID, "amount": 1250, "currency": "usd", "stripe_payment_intent_id": "pi_1",
              "amount_received": 0, "created_at": datetime(2026, 12, 1, tzinfo=UTC), **fields}
    return Payment(**values)


def intent(**fields: object) -> ProviderPayment:
    values = {"id": "pi_1", "status": ProviderStatus.succeeded, "amount": 1250, "currency": "usd",
              "amount_received": 1250, "amount_capturable": 0, "client_secret": None, "payment_method": None,
              "payment_method_types": ("card",), "capture_method": "automatic", "next_action": None,
              "last_error": None, "latest_charge": None, "payment_method_details": None, "customer": None,
              "metadata": {"paymentd_payment_id": str(PAYMENT_ID)}, **fields}
    return ProviderPayment(**values)  # type: ignore[arg-type]


def refund(amount: int = 500, currency: str = "usd", payment_id: str = "pi_1") -> ProviderRefund:
    return ProviderRefund(id="re_1", payment_id=payment_id, amount=amount, currency=currency, status="succeeded",
                          failure_reason=None, reason=None)


def test_a_consistent_payment_report_passes() -> None:
    assert consistency.of_payment(payment(), intent()) is None
    assert consistency.of_payment(payment(), intent(currency="USD")) is None
    assert consistency.of_payment(payment(), intent(amount_received=0, amount_capturable=1250)) is None
    assert consistency.of_payment(payment(), intent(metadata={})) is None  # not every report carries it


@pytest.mark.parametrize(("fields", "field"), [
    ({"amount_received": 1251}, "amount_received"),
    ({"amount_received": -1}, "amount_received"),
    ({"amount_capturable": 99_999}, "amount_capturable"),
    ({"currency": "eur"}, "currency"),
    ({"amount": 99_999, "amount_received": 99_999}, "amount"),
    ({"id": "pi_other"}, "payment_intent"),
    ({"metadata": {"paymentd_payment_id": str(uuid.uuid4())}}, "payment"),
])
def test_an_inconsistent_payment_report_names_what_disagrees(fields: dict, field: str) -> None:
    found = consistency.of_payment(payment(), intent(**fields))
    assert found is not None and found.field == field
    assert found.outcome.startswith(f"{consistency.REFUSED} {field} (")


def test_refund_rules() -> None:
    assert consistency.of_refund(payment(), refund(), recorded_amount=None, refunded_besides=0) is None
    assert consistency.of_refund(payment(), refund(500), recorded_amount=500, refunded_besides=0) is None
    assert consistency.of_refund(payment(), refund(750), recorded_amount=None, refunded_besides=500) is None
    cases = [
        (refund(currency="eur"), None, 0, "currency"),
        (refund(1251), None, 0, "refund amount"),
        (refund(0), None, 0, "refund amount"),
        (refund(800), None, 500, "refund amount"),
        (refund(600), 500, 0, "refund amount"),
        (refund(payment_id="pi_other"), None, 0, "payment_intent"),
    ]
    for report, recorded, besides, field in cases:
        found = consistency.of_refund(payment(), report, recorded_amount=recorded, refunded_besides=besides)
        assert found is not None and found.field == field, (report, found)


def test_dispute_rules() -> None:
    assert consistency.of_dispute(payment(), intent_id="pi_1", amount=1250, currency="usd") is None
    assert consistency.of_dispute(payment(), intent_id=None, amount=1, currency="usd") is None
    for kwargs, field in (({"amount": 1251}, "dispute amount"), ({"currency": "gbp"}, "currency"),
                          ({"intent_id": "pi_2"}, "payment_intent")):
        found = consistency.of_dispute(payment(), **{"intent_id": "pi_1", "amount": 1000, "currency": "usd",
                                                     **kwargs})
        assert found is not None and found.field == field


def event(**fields: object) -> ProviderEvent:
    values = {"id": "evt_1", "type": "payment_intent.succeeded", "created": datetime.now(UTC),
              "object_type": "payment_intent", "object": intent(), "livemode": False, "payment_intent_id": "pi_1",
              **fields}
    return ProviderEvent(**values)  # type: ignore[arg-type]


def test_origin_rules() -> None:
    test_mode = consistency.Origin(livemode=False)
    assert consistency.of_origin(event(), test_mode) is None
    assert consistency.of_origin(event(livemode=True), test_mode).field == "mode"  # type: ignore[union-attr]
    assert consistency.of_origin(event(livemode=True), consistency.Origin(livemode=True)) is None
    assert consistency.of_origin(event(account="acct_x"), test_mode).field == "account"  # type: ignore[union-attr]


def test_the_stripe_event_carries_its_account_and_minimized_objects() -> None:
    parsed = to_provider_event({"id": "evt_1", "type": "charge.succeeded", "created": 1, "livemode": True,
                                "account": "acct_9", "data": {"object": {
                                    "id": "ch_1", "object": "charge", "payment_intent": {"id": "pi_1"},
                                    "billing_details": {"email": "a@b.c"}, "amount": 5, "currency": "usd"}}})
    assert parsed.account == "acct_9" and parsed.livemode is True
    assert parsed.object == {"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 5,
                             "currency": "usd"}
    assert minimized({"id": "x_1", "object": "customer", "email": "a@b.c", "name": "A"}) == {
        "id": "x_1", "object": "customer"}


# --------------------------------------------------------------------------- cursors and instants


def test_a_cursor_round_trips() -> None:
    row = payment()
    assert decode_cursor(encode_cursor(row)) == (row.created_at, row.id)


@pytest.mark.parametrize("raw", [
    b'{"t": "9999-12-31T23:59:59-14:00", "id": "00000000-0000-4000-8000-000000000000"}',
    b'{"t": "2026-01-01T00:00:00", "id": "00000000-0000-4000-8000-000000000000"}',
    b'{"t": "2026-01-01T00:00:00+00:00", "id": 5}',
    b'{"t": 5, "id": "00000000-0000-4000-8000-000000000000"}',
    b'[1, 2]',
    b'[' * 100_000,
    b'\xff\xfe',
])
def test_a_hostile_cursor_is_an_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_cursor(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    assert caught.value.param == "cursor"
    json.dumps(caught.value.message)  # a plain message, nothing of the input


def test_instants_are_utc_within_range() -> None:
    assert utc_instant(datetime(2026, 1, 1), "x") == datetime(2026, 1, 1, tzinfo=UTC)
    for extreme in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC), datetime.max):
        with pytest.raises(InvalidRequest):
            utc_instant(extreme, "x")


def test_webhook_retention_is_configurable_with_a_30_day_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().webhook_retention_days == 30
    monkeypatch.setenv("PAYMENTD_WEBHOOK_RETENTION_DAYS", "7")
    assert Settings().webhook_retention_days == 7
    monkeypatch.setenv("PAYMENTD_WEBHOOK_RETENTION_DAYS", "0")
    with pytest.raises(ValueError):
        Settings()
