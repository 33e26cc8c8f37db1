"""Card-number detection: Stripe's test cards caught, ordinary ids and numbers left alone."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymentd.card_data import REDACTED, contains_card_number, find_card_number, luhn_valid, redact

# Stripe test cards (docs.stripe.com/testing), 13 to 19 digits, several networks.
STRIPE_TEST_CARDS = [
    "4242424242424242",  # visa
    "4000000000000002",  # visa, declined
    "4000056655665556",  # visa debit
    "5555555555554444",  # mastercard
    "2223003122003222",  # mastercard 2-series
    "378282246310005",  # amex, 15 digits
    "6011111111111117",  # discover
    "3056930009020004",  # diners, 16 digits
    "36227206271667",  # diners, 14 digits
    "3566002020360505",  # jcb
    "6200000000000005",  # unionpay
    "6205500000000000004",  # unionpay, 19 digits
    "4222222222222",  # visa, 13 digits
]


def _luhn_complete(body: str) -> str:
    """Append the check digit that makes ``body`` pass Luhn."""
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError("unreachable")


@pytest.mark.parametrize("number", STRIPE_TEST_CARDS)
def test_stripe_test_cards(number: str) -> None:
    assert luhn_valid(number)
    assert contains_card_number(number)
    assert redact(number) == REDACTED


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4242",
        "4000-0000-0000-0002",
        "3782 822463 10005",
        "3782-822463-10005",
        "4242\u00a04242\u00a04242\u00a04242",  # no-break spaces
        "4242\u20134242\u20134242\u20134242",  # en dashes
        "my card is 4242 4242 4242 4242, exp 12/30",
        "card4242424242424242x",
        "call me: 4242424242424242!",
        "4242 4242 4242 4242 1230 123",  # card, expiry and cvc in one run
        "42424242424242421230123",  # the same, glued
        "ref 12 4242 4242 4242 4242",
        "４２４２４２４２４２４２４２４２",  # full-width digits
        "4222222222222",
    ],
)
def test_found_inside_text(text: str) -> None:
    assert contains_card_number(text)
    assert "4242" not in redact(text).replace("ref 12", "")
    assert REDACTED in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails Luhn
        "4242 4242 4242 4241",
        "424242424242",  # 12 digits
        "42424242424242424242424242",  # 26 digits, no window... (checked below)
        "123e4567-e89b-12d3-a456-426614174000",
        "12345678-1234-1234-1234-123456789012",  # all-digit UUID
        "pm_1NvAbc2eZvKYlo2C4242x",
        "pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_Fbq0tWdl9B7sAjx2JcYBb1qRz",
        "1732615273123",  # ms timestamp
        "1732615273123456",  # us timestamp
        "1732615273123456789",  # ns timestamp
        "100000.00",
        "999999.99",
        "2026-11-26T10:21:13Z",
        "+1 415-555-0123",
        "0000000000000000",
        "4242 4242 4242 4242 4242 4242 4242"[:0],  # empty
        "order 42 of 4242",
    ],
)
def test_not_flagged(text: str) -> None:
    if text == "42424242424242424242424242":
        # 26 digits: every 13-19 window is searched; this one has Luhn windows,
        # so it *is* flagged - documented: long runs are treated strictly.
        assert contains_card_number(text)
        return
    assert not contains_card_number(text)
    assert redact(text) == text


def test_every_uuid_form_passes() -> None:
    for _ in range(3000):
        u = uuid.uuid4()
        assert not contains_card_number(str(u))
        if u.hex.isdigit():
            continue  # about 1 in 3,000,000: an all-digit run is scanned by design (module docstring)
        assert not contains_card_number(u.hex)
        assert not contains_card_number(u.hex.upper())
    # A known dashless UUID whose leading 13 digits pass Luhn.
    assert not contains_card_number("8090852859704c50802f604892f85a11")
    # ...but the same digits in an ordinary short token are still caught.
    assert contains_card_number("ref8090852859704c")


def test_hex_digests_pass() -> None:
    import hashlib

    for i in range(3000):
        assert not contains_card_number(hashlib.sha256(str(i).encode()).hexdigest())
        assert not contains_card_number(hashlib.sha1(str(i).encode()).hexdigest())


def test_luhn_valid() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("")
    assert not luhn_valid("4242 4242 4242 4242")
    assert not luhn_valid("42a2")
    assert luhn_valid("０")  # a Unicode decimal digit is a digit


def test_redact_keeps_the_rest() -> None:
    text = "paid with 4242 4242 4242 4242 and 5555-5555-5555-4444 at 10:00"
    assert redact(text) == f"paid with {REDACTED} and {REDACTED} at 10:00"
    assert redact("nothing here") == "nothing here"


def test_find_card_number_paths() -> None:
    body = {
        "user_id": str(uuid.uuid4()),
        "amount": "19.99",
        "payment_method": "pm_card_visa",
        "metadata": {"order": "1234", "note": "card 4242 4242 4242 4242"},
    }
    assert find_card_number(body) == "metadata.note"
    assert find_card_number({"items": [{"sku": "a"}, {"sku": "b", "memo": "378282246310005"}]}) == "items[1].memo"
    assert find_card_number({"a": [[["4222222222222"]]]}) == "a[0][0][0]"
    assert find_card_number("4242424242424242") == "$"
    assert find_card_number(["x", "4242424242424242"]) == "[1]"


def test_find_card_number_json_numbers() -> None:
    assert find_card_number({"amount": 4242424242424242}) == "amount"
    assert find_card_number({"amount": 4242424242424242.0}) == "amount"
    assert find_card_number({"amount": Decimal("4242424242424242")}) == "amount"
    assert find_card_number({"amount": 1999, "ok": True, "none": None, "f": 19.99}) is None


def test_find_card_number_in_keys_never_returns_the_number() -> None:
    path = find_card_number({"metadata": {"4242424242424242": "x"}})
    assert path == f"metadata.{REDACTED}"
    assert "4242" not in path


def test_find_card_number_document_order() -> None:
    body = {"a": {"b": "4242424242424242"}, "c": "5555555555554444", "4000000000000002": 1}
    assert find_card_number(body) == "a.b"
    assert find_card_number({"x": "1", "4000000000000002": "4242424242424242"}) == REDACTED


def test_find_card_number_clean_body() -> None:
    body = {
        "user_id": "0b0e4f57-2f6c-4d4a-9b8e-6f0a4f6c1a11",
        "amount": "100000.00",
        "currency": "usd",
        "metadata": {"created_ms": 1732615273123, "ids": ["pi_3MtwBwLkdIwHu7ix28a3tqPa"]},
    }
    assert find_card_number(body) is None


def test_deep_nesting_does_not_recurse() -> None:
    node: object = "4242424242424242"
    for _ in range(5000):
        node = [node]
    assert find_card_number(node) == "[0]" * 5000


def test_long_input_is_fast_enough() -> None:
    assert not contains_card_number("0" * 200_000)
    assert not contains_card_number(" ".join(["1234"] * 20_000) + " 1")


# --- properties ----------------------------------------------------------------------

_BODY = st.text(alphabet="0123456789", min_size=12, max_size=18).filter(lambda s: s[0] not in "01")


@given(_BODY, st.sampled_from(["", " ", "-"]), st.text(alphabet="abc xyz.,:", max_size=10))
def test_any_luhn_number_is_found_and_redacted(body: str, sep: str, around: str) -> None:
    number = _luhn_complete(body)
    if sep:
        number = sep.join(number[i : i + 4] for i in range(0, len(number), 4))
    text = f"{around}{number}{around}"
    assert contains_card_number(text)
    assert find_card_number({"metadata": {"note": text}}) == "metadata.note"
    redacted = redact(text)
    assert not contains_card_number(redacted)
    assert number not in redacted


@given(_BODY)
def test_failing_luhn_is_not_flagged(body: str) -> None:
    good = _luhn_complete(body)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not contains_card_number(bad)


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_short_numbers_and_amounts_never_flagged(n: int) -> None:
    assert not contains_card_number(str(n))
    assert not contains_card_number(f"{n}.{n % 100:02d}")
    assert find_card_number({"amount": n}) is None


@given(st.uuids())
def test_uuids_never_flagged(u: uuid.UUID) -> None:
    assert not contains_card_number(str(u))
    assert find_card_number({"id": str(u)}) is None


@given(st.text(max_size=200))
def test_redact_is_idempotent_and_total(text: str) -> None:
    once = redact(text)
    assert redact(once) == once
    assert not contains_card_number(once)
