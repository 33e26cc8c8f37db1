"""Money as paymentd handles it: an integer of minor units beside its currency.

The API speaks decimal strings in major units, Stripe speaks integers in minor
units; this module is the one exact, float-free conversion between the two, with
Stripe's per-currency exponents and charge limits.
"""

from __future__ import annotations

import decimal
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from collections.abc import Mapping
from typing import Final

from paymentd import errors

__all__ = [
    "CURRENCY_EXPONENTS",
    "MINIMUM_CHARGE",
    "MAXIMUM_CHARGE_MINOR",
    "MAXIMUM_CHARGE_OVERRIDES",
    "WHOLE_UNIT_CURRENCIES",
    "MoneyError",
    "CurrencyMismatch",
    "Money",
    "normalize_currency",
    "decimal_places",
    "minimum_charge",
    "maximum_charge",
]

# --- Currencies and exponents ----------------------------------------------------
#
# Every presentment currency Stripe lists for card payments (docs.stripe.com/currencies),
# with the exponent of the *integer Stripe expects* in ``amount``; that integer is
# what paymentd stores, so minor units here are always Stripe's minor units.
#
# Zero-decimal at Stripe (amount 500 means 500 units) - differs from ISO 4217 for
# some (mga, vuv, ... are 2 in ISO; Stripe charges them in whole units).
_ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf vnd vuv xaf xof xpf".split()
)
# Three-decimal at Stripe. Stripe also requires the last of the three digits to
# be 0 (amounts rounded to tens of minor units, e.g. 5.120 KWD, never 5.124), for
# its acquiring partners; parse() enforces that so the caller hears it from us.
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())
# Stripe's special cases, and what paymentd does with each:
# - isk, ugx: zero-decimal currencies in practice, but "backwards compatibility
#   requires you to represent [them] as a two-decimal value, where the decimal
#   amount is always 00" (Stripe answers "charged amounts must be evenly divisible
#   by 100" otherwise). Stripe's docs list ugx among zero-decimal currencies too,
#   and integrations that believed that list charged 1/100 of the price. So the
#   exponent here is 2 (Stripe's integer), amounts must be whole units, and the
#   API shows them without decimals ("5000"), as ISO 4217 does.
# - huf, twd: zero-decimal for *payouts* only; charges may carry two decimals, so
#   they are ordinary two-decimal currencies here.
WHOLE_UNIT_CURRENCIES: Final[frozenset[str]] = frozenset({"isk", "ugx"})

# Two-decimal at Stripe (the rest of its list). Notes: bgn is still listed by
# Stripe although Bulgaria joined the euro in 2026; sle replaced sll; Stripe
# keeps the old São Tomé code std; ang is listed (xcg, its 2025 successor, is not
# known to be supported yet).
_TWO_DECIMAL = frozenset(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl
    bsd bwp byn bzd cad cdf chf cny cop crc cve czk dkk dop dzd egp etb eur fjd
    fkp gbp gel gip gmd gtq gyd hkd hnl htg huf idr ils inr isk jmd kes kgs khr
    kyd kzt lak lbp lkr lrd lsl mad mdl mkd mmk mnt mop mur mvr mwk mxn myr mzn
    nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr
    sek sgd shp sle sos srd std szl thb tjs top try ttd twd tzs uah ugx uyu uzs
    wst xcd yer zar zmw
    """.split()
)

CURRENCY_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        **{c: 2 for c in sorted(_TWO_DECIMAL)},
        **{c: 0 for c in sorted(_ZERO_DECIMAL)},
        **{c: 3 for c in sorted(_THREE_DECIMAL)},
    }
)

# Granularity Stripe accepts, in minor units (see the special cases above).
_STEP: Final[Mapping[str, int]] = MappingProxyType(
    {c: (100 if c in WHOLE_UNIT_CURRENCIES else 10 if c in _THREE_DECIMAL else 1) for c in CURRENCY_EXPONENTS}
)

# --- Charge limits ---------------------------------------------------------------
#
# Stripe's table of minimum charge amounts (docs.stripe.com/currencies#minimum-and-
# maximum-charge-amounts), in minor units.
_STRIPE_MINIMUMS: Final[dict[str, int]] = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50,
    "chf": 50, "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400,
    "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300,
    "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip

# Every other currency: Stripe's rule is "$0.50 US or equivalent in the charge
# currency" at the day's exchange rate, which pure code cannot know. paymentd uses
# 0.50 USD at the approximate rates below (units per USD, late 2025), rounded *up*
# to two significant digits and to the currency's step. These only give the
# caller an early, clear 400; Stripe stays the judge, and the provider layer maps
# Stripe's own "amount too small" to amount_too_small. Rates of fast-moving
# currencies (ars, ngn, egp, try, lbp, ...) drift; refresh this table with care.
# (Stripe also checks the minimum in the *settlement* currency after conversion;
# that depends on the account and is left to Stripe.)
_APPROX_UNITS_PER_USD: Final[dict[str, str]] = {
    "afn": "70", "all": "90", "amd": "390", "ang": "1.79", "aoa": "910",
    "ars": "1200", "awg": "1.79", "azn": "1.70", "bam": "1.70", "bbd": "2",
    "bdt": "120", "bhd": "0.376", "bif": "2950", "bmd": "1", "bnd": "1.30",
    "bob": "6.91", "bsd": "1", "bwp": "13.7", "byn": "3.3", "bzd": "2",
    "cdf": "2850", "clp": "950", "cny": "7.2", "cop": "4100", "crc": "505",
    "cve": "96", "djf": "178", "dop": "60", "dzd": "132", "egp": "49",
    "etb": "125", "fjd": "2.25", "fkp": "0.79", "gel": "2.75", "gip": "0.79",
    "gmd": "70", "gnf": "8650", "gtq": "7.7", "gyd": "209", "hnl": "25.5",
    "htg": "131", "idr": "16000", "ils": "3.7", "isk": "138", "jmd": "157",
    "jod": "0.709", "kes": "129", "kgs": "87", "khr": "4050", "kmf": "450",
    "krw": "1400", "kwd": "0.307", "kyd": "0.833", "kzt": "500", "lak": "21800",
    "lbp": "89500", "lkr": "300", "lrd": "190", "lsl": "18", "mad": "10",
    "mdl": "17.8", "mga": "4600", "mkd": "55", "mmk": "2100", "mnt": "3400",
    "mop": "8", "mur": "46", "mvr": "15.4", "mwk": "1735", "mzn": "64",
    "nad": "18", "ngn": "1550", "nio": "36.8", "npr": "135", "omr": "0.385",
    "pab": "1", "pen": "3.75", "pgk": "4", "php": "58", "pkr": "280",
    "pyg": "7800", "qar": "3.64", "rsd": "108", "rub": "95", "rwf": "1400",
    "sar": "3.75", "sbd": "8.4", "scr": "14", "shp": "0.79", "sle": "22.7",
    "sos": "571", "srd": "35", "std": "22500", "szl": "18", "tjs": "10.9",
    "tnd": "3.1", "top": "2.35", "try": "38", "ttd": "6.8", "twd": "32",
    "tzs": "2600", "uah": "41", "ugx": "3700", "uyu": "40", "uzs": "12800",
    "vnd": "25500", "vuv": "119", "wst": "2.8", "xaf": "600", "xcd": "2.70",
    "xof": "600", "xpf": "110", "yer": "250", "zar": "18", "zmw": "27",
}  # fmt: skip

_USD_MINIMUM: Final = Decimal("0.50")


def _round_up(minor: Decimal, step: int) -> int:
    # Two significant digits, rounded up: never below the 0.50 USD equivalent.
    value = math.ceil(minor)
    if value >= 100:
        scale = 10 ** (len(str(value)) - 2)
        value = -(-value // scale) * scale
    return -(-value // step) * step


def _derived_minimum(currency: str) -> int:
    rate = Decimal(_APPROX_UNITS_PER_USD[currency])
    return _round_up(_USD_MINIMUM * rate * 10 ** CURRENCY_EXPONENTS[currency], _STEP[currency])


MINIMUM_CHARGE: Final[Mapping[str, int]] = MappingProxyType(
    {c: _STRIPE_MINIMUMS[c] if c in _STRIPE_MINIMUMS else _derived_minimum(c) for c in CURRENCY_EXPONENTS}
)

# Stripe: "The amount value supports up to eight digits (e.g., a value of 99999999
# for a USD charge of $999,999.99)", in minor units whatever the currency - so the
# ceiling is 99,999,999 JPY but 99,999.999 KWD. The one documented exception is
# IDR, which allows twelve digits. Some payment methods have lower limits of their
# own; those are Stripe's to enforce.
MAXIMUM_CHARGE_MINOR: Final = 99_999_999
MAXIMUM_CHARGE_OVERRIDES: Final[Mapping[str, int]] = MappingProxyType({"idr": 999_999_999_999})

# Hard ceiling even without charge limits (refund/capture amounts): a PostgreSQL
# bigint. Anything above is certainly wrong and would not fit the database.
_BIGINT_MAX: Final = 2**63 - 1


# --- Errors ------------------------------------------------------------------------


class MoneyError(errors.InvalidRequest):
    """An amount or currency the API cannot accept (400 invalid_request_error).

    Messages state the rule, never the rejected value: a client that pastes a
    card number into ``amount`` must not see it echoed back or logged.
    """

    CODES: Final = frozenset(
        {"amount_invalid", "amount_too_small", "amount_too_large", "amount_too_precise", "currency_invalid"}
    )

    def __init__(self, message: str, *, code: str, param: str) -> None:
        if code not in self.CODES:
            raise ValueError(f"unknown MoneyError code {code!r}")
        if param not in ("amount", "currency"):
            raise ValueError(f"unknown MoneyError param {param!r}")
        super().__init__(message, code=code, param=param)


class CurrencyMismatch(ValueError):
    """Arithmetic or comparison across currencies: a bug in paymentd, not bad input."""


def _amount_error(code: str, message: str) -> MoneyError:
    return MoneyError(message, code=code, param="amount")


# --- Currency helpers --------------------------------------------------------------


def normalize_currency(code: str) -> str:
    """Lower-case and validate an ISO 4217 code against Stripe's list."""
    if not isinstance(code, str):
        raise MoneyError("currency must be a three-letter ISO 4217 code", code="currency_invalid", param="currency")
    lowered = code.strip().lower()
    if not re.fullmatch(r"[a-z]{3}", lowered):
        raise MoneyError("currency must be a three-letter ISO 4217 code", code="currency_invalid", param="currency")
    if lowered not in CURRENCY_EXPONENTS:
        raise MoneyError(f"currency {lowered} is not supported", code="currency_invalid", param="currency")
    return lowered


def decimal_places(currency: str) -> int:
    """Decimals the API accepts and shows for ``currency`` (0 for isk/ugx, see above)."""
    c = normalize_currency(currency)
    return 0 if c in WHOLE_UNIT_CURRENCIES else CURRENCY_EXPONENTS[c]


def minimum_charge(currency: str) -> int:
    """Smallest charge, in minor units."""
    return MINIMUM_CHARGE[normalize_currency(currency)]


def maximum_charge(currency: str) -> int:
    """Largest charge, in minor units (rounded down to what Stripe accepts)."""
    c = normalize_currency(currency)
    high = MAXIMUM_CHARGE_OVERRIDES.get(c, MAXIMUM_CHARGE_MINOR)
    return high - high % _STEP[c]


# --- Parsing -----------------------------------------------------------------------

# Plain decimal notation only: no sign, no exponent, no thousands separators, ASCII
# digits only (str.isdigit would let "４２" or "²" through). Surrounding whitespace is
# stripped first - it cannot change the meaning, so refusing it would only annoy.
_AMOUNT_RE: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_MAX_AMOUNT_CHARS: Final = 64
# Wide enough that nothing below ever rounds: inputs are capped at 64 digits.
_EXACT: Final = decimal.Context(
    prec=200, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.Inexact, decimal.InvalidOperation]
)
_FLOAT_EXACT_LIMIT: Final = 2**53


def _to_decimal(amount: object) -> Decimal:
    # bool is an int subclass: True would otherwise be "1".
    if isinstance(amount, bool):
        raise _amount_error("amount_invalid", "amount must be a decimal number, not a boolean")
    if isinstance(amount, int):
        return Decimal(amount)
    if isinstance(amount, float):
        # A float here came from a JSON number. repr() gives the shortest literal
        # that round-trips, i.e. what the client wrote for any amount of up to 15
        # significant digits; no float arithmetic ever happens.
        if not math.isfinite(amount):
            raise _amount_error("amount_invalid", "amount must be a finite decimal number")
        if abs(amount) >= _FLOAT_EXACT_LIMIT:
            raise _amount_error("amount_too_large", "amount is too large; send it as a string")
        return Decimal(repr(amount))
    if isinstance(amount, Decimal):
        return amount
    if isinstance(amount, str):
        text = amount.strip()
        if len(text) > _MAX_AMOUNT_CHARS:
            raise _amount_error("amount_invalid", "amount is too long")
        if not _AMOUNT_RE.fullmatch(text):
            raise _amount_error(
                "amount_invalid", 'amount must be a positive decimal in plain notation, like "19.99"'
            )
        return Decimal(text)
    raise _amount_error("amount_invalid", "amount must be a decimal string or a number")


def _to_minor(value: Decimal, currency: str) -> int:
    if not value.is_finite():
        raise _amount_error("amount_invalid", "amount must be a finite decimal number")
    if value <= 0:
        raise _amount_error("amount_invalid", "amount must be positive")
    if value.adjusted() >= 19:
        raise _amount_error("amount_too_large", "amount is too large")
    if len(value.as_tuple().digits) > _MAX_AMOUNT_CHARS:
        raise _amount_error("amount_too_precise", "amount has too many digits")
    places = decimal_places(currency)
    exponent = CURRENCY_EXPONENTS[currency]
    # Judge precision on the value, not the notation: "19.990" is exactly 19.99,
    # and JSON encoders commonly write 1000 as 1000.0; no rounding ever happens.
    normalized = value.normalize(_EXACT)
    if -normalized.as_tuple().exponent > places:  # type: ignore[operator]
        if places == 0:
            raise _amount_error("amount_too_precise", f"{currency} amounts must be whole numbers")
        raise _amount_error("amount_too_precise", f"{currency} amounts have at most {places} decimals")
    minor = int(normalized.scaleb(exponent, _EXACT))
    if minor % _STEP[currency]:
        # Only the three-decimal currencies get here (whole-unit ones fail above).
        raise _amount_error(
            "amount_too_precise", f"{currency} amounts must end in 0 in the third decimal (Stripe rounds to tens)"
        )
    if minor > _BIGINT_MAX:
        raise _amount_error("amount_too_large", "amount is too large")
    return minor


# --- Money -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: ``minor`` units (Stripe's integer) of a lower-case ``currency``.

    ``minor`` may be zero or negative (e.g. nothing refunded yet, or a difference);
    only ``parse`` insists on a positive amount, because only clients send those.
    """

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise TypeError("Money.minor must be an int")
        # Frozen, so normalise through object.__setattr__ (the dataclass way).
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def parse(
        cls,
        amount: str | int | Decimal | float,
        currency: str = "usd",
        *,
        check_limits: bool = True,
    ) -> Money:
        """Parse an API amount in major units ("19.99", 19.99, 1000) into Money.

        Raises MoneyError (param ``currency`` first, then ``amount``). With
        ``check_limits=False`` only positivity and precision are checked (refund
        and capture amounts are bounded by the payment, not by Stripe's table).
        """
        c = normalize_currency(currency)
        minor = _to_minor(_to_decimal(amount), c)
        if check_limits:
            low, high = MINIMUM_CHARGE[c], maximum_charge(c)
            if minor < low:
                raise _amount_error("amount_too_small", f"amount must be at least {_format(low, c)} {c}")
            if minor > high:
                raise _amount_error("amount_too_large", f"amount must be at most {_format(high, c)} {c}")
        return cls(minor, c)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        """Money from Stripe's / the database's integer amount."""
        return cls(minor, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return CURRENCY_EXPONENTS[self.currency]

    def to_decimal(self) -> Decimal:
        """The exact value in major units (Decimal, never float)."""
        return Decimal(self.minor).scaleb(-self.exponent, _EXACT)

    def to_api(self) -> str:
        """The API's string: "19.99" usd, "1000" jpy, "1.500" kwd, "5000" isk."""
        return _format(self.minor, self.currency)

    def _check(self, other: object) -> Money:
        if not isinstance(other, Money):
            return NotImplemented  # type: ignore[return-value]
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} and {other.currency}")
        return other

    def __add__(self, other: object) -> Money:
        o = self._check(other)
        if o is NotImplemented:
            return NotImplemented
        return Money(self.minor + o.minor, self.currency)

    def __sub__(self, other: object) -> Money:
        o = self._check(other)
        if o is NotImplemented:
            return NotImplemented
        return Money(self.minor - o.minor, self.currency)

    def __lt__(self, other: object) -> bool:
        o = self._check(other)
        return NotImplemented if o is NotImplemented else self.minor < o.minor

    def __le__(self, other: object) -> bool:
        o = self._check(other)
        return NotImplemented if o is NotImplemented else self.minor <= o.minor

    def __gt__(self, other: object) -> bool:
        o = self._check(other)
        return NotImplemented if o is NotImplemented else self.minor > o.minor

    def __ge__(self, other: object) -> bool:
        o = self._check(other)
        return NotImplemented if o is NotImplemented else self.minor >= o.minor

    def __str__(self) -> str:
        return f"{self.to_api()} {self.currency}"


def _format(minor: int, currency: str) -> str:
    # Integer arithmetic only. Whole-unit currencies (isk, ugx) drop their "00",
    # unless an amount from elsewhere is not whole: then show it all, never lose it.
    exponent = CURRENCY_EXPONENTS[currency]
    places = 0 if currency in WHOLE_UNIT_CURRENCIES and minor % 10**exponent == 0 else exponent
    sign = "-" if minor < 0 else ""
    units, frac = divmod(abs(minor), 10**exponent)
    if places == 0:
        return f"{sign}{units}"
    return f"{sign}{units}.{frac:0{exponent}d}"
