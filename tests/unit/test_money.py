"""Money: exact parsing of API amounts, Stripe's exponents and limits, arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymentd import errors
from paymentd.money import (
    CURRENCY_EXPONENTS,
    MAXIMUM_CHARGE_MINOR,
    MINIMUM_CHARGE,
    WHOLE_UNIT_CURRENCIES,
    CurrencyMismatch,
    Money,
    MoneyError,
    decimal_places,
    maximum_charge,
    normalize_currency,
)

CURRENCIES = sorted(CURRENCY_EXPONENTS)


def _step(currency: str) -> int:
    if currency in WHOLE_UNIT_CURRENCIES:
        return 100
    return 10 if CURRENCY_EXPONENTS[currency] == 3 else 1


@st.composite
def chargeable(draw: st.DrawFn) -> Money:
    """Any Money that parse() accepts with limits on."""
    c = draw(st.sampled_from(CURRENCIES))
    step = _step(c)
    low = -(-MINIMUM_CHARGE[c] // step)
    high = maximum_charge(c) // step
    return Money.from_minor(draw(st.integers(low, high)) * step, c)


# --- the table -----------------------------------------------------------------------


def test_exponents_follow_stripe() -> None:
    zero = "bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split()
    three = "bhd jod kwd omr tnd".split()
    for c in zero:
        assert CURRENCY_EXPONENTS[c] == 0, c
    for c in three:
        assert CURRENCY_EXPONENTS[c] == 3, c
    for c in ("usd", "eur", "gbp", "huf", "twd", "idr", "inr"):
        assert CURRENCY_EXPONENTS[c] == 2, c
    # Stripe's special cases: whole units, written as two-decimal integers.
    assert CURRENCY_EXPONENTS["isk"] == CURRENCY_EXPONENTS["ugx"] == 2
    assert all(c == c.lower() and len(c) == 3 for c in CURRENCY_EXPONENTS)
    assert len(CURRENCY_EXPONENTS) > 130


def test_minimums_match_stripes_table_and_cover_every_currency() -> None:
    assert set(MINIMUM_CHARGE) == set(CURRENCY_EXPONENTS)
    expected = {"usd": 50, "eur": 50, "gbp": 30, "jpy": 50, "hkd": 400, "huf": 17500, "mxn": 1000, "thb": 1000}
    for c, minor in expected.items():
        assert MINIMUM_CHARGE[c] == minor
    for c, minor in MINIMUM_CHARGE.items():
        assert minor > 0 and minor % _step(c) == 0, c


def test_maximums() -> None:
    assert MAXIMUM_CHARGE_MINOR == 99_999_999
    assert maximum_charge("usd") == 99_999_999
    assert maximum_charge("idr") == 999_999_999_999
    assert maximum_charge("kwd") == 99_999_990  # last of three decimals must be 0
    assert maximum_charge("isk") == 99_999_900  # whole units


# --- parse: examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor", "api"),
    [
        ("19.99", "usd", 1999, "19.99"),
        ("19.9", "usd", 1990, "19.90"),
        ("19.990", "usd", 1999, "19.99"),  # trailing zeros change nothing
        (" 20 ", "USD", 2000, "20.00"),
        (19.99, "usd", 1999, "19.99"),  # a JSON number
        (1000.0, "jpy", 1000, "1000"),
        (1000, "jpy", 1000, "1000"),
        ("1000", "JPY", 1000, "1000"),
        ("1.5", "kwd", 1500, "1.500"),
        ("1.250", "kwd", 1250, "1.250"),
        (Decimal("0.50"), "usd", 50, "0.50"),
        ("999999.99", "usd", 99_999_999, "999999.99"),
        ("5000", "isk", 500_000, "5000"),
        ("5000.00", "ugx", 500_000, "5000"),
        ("175", "huf", 17500, "175.00"),
        ("9999999999.99", "idr", 999_999_999_999, "9999999999.99"),
    ],
)
def test_parse_examples(amount: object, currency: str, minor: int, api: str) -> None:
    m = Money.parse(amount, currency)  # type: ignore[arg-type]
    assert m.minor == minor
    assert m.currency == currency.lower()
    assert m.to_api() == api


@pytest.mark.parametrize(
    ("amount", "currency", "code"),
    [
        ("19.999", "usd", "amount_too_precise"),
        ("1.5", "jpy", "amount_too_precise"),
        ("1.2345", "kwd", "amount_too_precise"),
        ("1.235", "kwd", "amount_too_precise"),  # Stripe: third decimal must be 0
        ("5.5", "isk", "amount_too_precise"),
        ("100.50", "ugx", "amount_too_precise"),
        (0.1 + 0.2, "usd", "amount_too_precise"),  # float noise is never rounded away
        ("0.49", "usd", "amount_too_small"),
        ("0.29", "gbp", "amount_too_small"),
        ("49", "jpy", "amount_too_small"),
        ("1000000", "usd", "amount_too_large"),
        ("1000000.00", "usd", "amount_too_large"),
        ("100000000", "jpy", "amount_too_large"),
        (1e300, "usd", "amount_too_large"),
        ("0", "usd", "amount_invalid"),
        ("0.00", "usd", "amount_invalid"),
        (0, "usd", "amount_invalid"),
        (-5, "usd", "amount_invalid"),
        ("-5", "usd", "amount_invalid"),
        ("+5", "usd", "amount_invalid"),
        ("1e3", "usd", "amount_invalid"),
        ("1E3", "usd", "amount_invalid"),
        (".5", "usd", "amount_invalid"),
        ("5.", "usd", "amount_invalid"),
        ("1,000.00", "usd", "amount_invalid"),
        ("1_000", "usd", "amount_invalid"),
        ("", "usd", "amount_invalid"),
        ("  ", "usd", "amount_invalid"),
        ("NaN", "usd", "amount_invalid"),
        ("Infinity", "usd", "amount_invalid"),
        ("１９.９９", "usd", "amount_invalid"),  # full-width digits
        ("19.99 usd", "usd", "amount_invalid"),
        ("1" * 65, "usd", "amount_invalid"),
        (float("nan"), "usd", "amount_invalid"),
        (float("inf"), "usd", "amount_invalid"),
        (Decimal("NaN"), "usd", "amount_invalid"),
        (Decimal("-Infinity"), "usd", "amount_invalid"),
        (True, "usd", "amount_invalid"),
        (False, "usd", "amount_invalid"),
        (None, "usd", "amount_invalid"),
        ([1], "usd", "amount_invalid"),
        ({"amount": 1}, "usd", "amount_invalid"),
    ],
)
def test_parse_rejects(amount: object, currency: str, code: str) -> None:
    with pytest.raises(MoneyError) as info:
        Money.parse(amount, currency)  # type: ignore[arg-type]
    err = info.value
    assert err.code == code
    assert err.param == "amount"
    assert err.status == 400 and err.type == "invalid_request_error"
    assert isinstance(err, errors.InvalidRequest)


@pytest.mark.parametrize("currency", ["xxx", "us", "usdd", "", "u5d", 840, None, "  ", "ZWL"])
def test_parse_rejects_currency(currency: object) -> None:
    with pytest.raises(MoneyError) as info:
        Money.parse("10", currency)  # type: ignore[arg-type]
    assert (info.value.code, info.value.param) == ("currency_invalid", "currency")


def test_currency_is_checked_before_amount() -> None:
    with pytest.raises(MoneyError) as info:
        Money.parse("not a number", "nope")
    assert info.value.param == "currency"


def test_messages_never_echo_the_amount() -> None:
    # A client that pastes a card number into amount must not see it echoed.
    for amount in ("4242424242424242", "4242424242424242.123", "4242 4242 4242 4242"):
        with pytest.raises(MoneyError) as info:
            Money.parse(amount, "usd")
        assert "4242" not in info.value.message
        assert "4242" not in str(info.value.envelope("req_1"))


def test_check_limits_false_only_needs_positive_and_precise() -> None:
    assert Money.parse("0.01", "usd", check_limits=False).minor == 1
    assert Money.parse("5000000", "usd", check_limits=False).minor == 500_000_000
    with pytest.raises(MoneyError) as info:
        Money.parse("0.001", "usd", check_limits=False)
    assert info.value.code == "amount_too_precise"
    with pytest.raises(MoneyError) as info:
        Money.parse("0", "usd", check_limits=False)
    assert info.value.code == "amount_invalid"
    # Still bounded by what the database can hold.
    with pytest.raises(MoneyError) as info:
        Money.parse("9" * 20, "usd", check_limits=False)
    assert info.value.code == "amount_too_large"


def test_money_error_codes_are_validated() -> None:
    with pytest.raises(ValueError):
        MoneyError("x", code="nope", param="amount")
    with pytest.raises(ValueError):
        MoneyError("x", code="amount_invalid", param="other")


# --- the value type ------------------------------------------------------------------


def test_normalize_currency() -> None:
    assert normalize_currency("USD") == "usd"
    assert normalize_currency(" eur ") == "eur"
    with pytest.raises(MoneyError):
        normalize_currency("usdollar")


def test_decimal_places() -> None:
    assert [decimal_places(c) for c in ("usd", "jpy", "kwd", "isk", "ugx")] == [2, 0, 3, 0, 0]


def test_constructor_validates() -> None:
    assert Money(100, "USD").currency == "usd"
    with pytest.raises(TypeError):
        Money(1.0, "usd")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Money(True, "usd")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(1, "xyz")


def test_money_is_immutable_and_hashable() -> None:
    m = Money(100, "usd")
    with pytest.raises(AttributeError):
        m.minor = 5  # type: ignore[misc]
    assert {m, Money(100, "usd")} == {m}


def test_to_decimal_and_zero() -> None:
    assert Money(1999, "usd").to_decimal() == Decimal("19.99")
    assert Money(1500, "kwd").to_decimal() == Decimal("1.5")
    assert Money(7, "jpy").to_decimal() == Decimal(7)
    assert Money.zero("usd").to_api() == "0.00"
    assert Money(-150, "usd").to_api() == "-1.50"


def test_whole_unit_currency_from_elsewhere_is_never_truncated() -> None:
    # Stripe never sends this, but if it did, showing "1" would lose 0.50.
    assert Money.from_minor(150, "isk").to_api() == "1.50"


def test_arithmetic_and_comparisons() -> None:
    a, b = Money(1999, "usd"), Money(1, "usd")
    assert a + b == Money(2000, "usd")
    assert a - b == Money(1998, "usd")
    assert b < a and b <= a and a > b and a >= b and a >= a
    assert Money(1, "usd") != Money(1, "eur")
    with pytest.raises(CurrencyMismatch):
        a + Money(1, "eur")
    with pytest.raises(CurrencyMismatch):
        a < Money(1, "eur")  # noqa: B015
    with pytest.raises(TypeError):
        a + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        a < 1  # type: ignore[operator]  # noqa: B015


# --- properties ----------------------------------------------------------------------


@given(chargeable())
def test_parse_inverts_to_api(m: Money) -> None:
    assert Money.parse(m.to_api(), m.currency) == m


@given(chargeable())
def test_to_api_has_exactly_the_currencys_decimals(m: Money) -> None:
    text = m.to_api()
    places = decimal_places(m.currency)
    if places == 0:
        assert "." not in text
    else:
        assert len(text.split(".")[1]) == places
    assert Decimal(text) == m.to_decimal()


@given(st.sampled_from(CURRENCIES), st.integers(1, 10**12), st.integers(1, 4))
def test_too_many_decimals_always_rejected(currency: str, units: int, extra: int) -> None:
    places = decimal_places(currency)
    # A non-zero last digit beyond the allowed places.
    text = f"{units}.{'0' * (places + extra - 1)}1"
    with pytest.raises(MoneyError) as info:
        Money.parse(text, currency, check_limits=False)
    assert info.value.code == "amount_too_precise"


@given(st.sampled_from(CURRENCIES), st.integers(-(10**15), 10**15), st.integers(-(10**15), 10**15))
def test_minor_unit_arithmetic_is_exact(currency: str, x: int, y: int) -> None:
    a, b = Money(x, currency), Money(y, currency)
    assert (a + b).minor == x + y
    assert (a - b).minor == x - y
    assert (a + b) - b == a
    assert (a + b).to_decimal() == a.to_decimal() + b.to_decimal()
    assert (a < b) == (x < y) and (a >= b) == (x >= y)


@given(st.decimals(min_value=Decimal("0.50"), max_value=Decimal("999999.99"), places=2))
def test_usd_decimal_strings_and_numbers_agree(value: Decimal) -> None:
    m = Money.parse(str(value), "usd")
    assert m.to_decimal() == value
    assert Money.parse(value, "usd") == m
    # A JSON number of the same literal (float) recovers the same amount.
    assert Money.parse(float(str(value)), "usd") == m


@given(st.integers(50, 99_999_999))
def test_jpy_integers(n: int) -> None:
    assert Money.parse(n, "jpy") == Money(n, "jpy")
    assert Money.parse(str(n), "jpy").to_api() == str(n)


@given(st.integers(16, 9_999_999))
def test_kwd_tens_of_fils(tens: int) -> None:
    m = Money.parse(f"{tens // 100}.{tens % 100:02d}0", "kwd")
    assert m.minor == tens * 10
    assert m.to_api().endswith("0") and len(m.to_api().split(".")[1]) == 3


@given(st.sampled_from(CURRENCIES))
def test_limits_are_inclusive(currency: str) -> None:
    low = Money.from_minor(MINIMUM_CHARGE[currency], currency)
    high = Money.from_minor(maximum_charge(currency), currency)
    assert Money.parse(low.to_api(), currency) == low
    assert Money.parse(high.to_api(), currency) == high
    step = _step(currency)
    below = Money.from_minor(MINIMUM_CHARGE[currency] - step, currency)
    above = Money.from_minor(maximum_charge(currency) + step, currency)
    if below.minor > 0:
        with pytest.raises(MoneyError) as info:
            Money.parse(below.to_api(), currency)
        assert info.value.code == "amount_too_small"
    with pytest.raises(MoneyError) as info:
        Money.parse(above.to_api(), currency)
    assert info.value.code == "amount_too_large"
