"""What a receipt says, built from plain values with no I/O, and formatted for people.

JSON, HTML, PDF and email all render this one object, so they never disagree.
Amounts and dates are formatted by babel (CLDR) for the receipt's locale.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.numbers import format_currency

from paymentd.money import Money

DEFAULT_LOCALE = "en_US"
# Merchant details a receipt may print (Account.details); anything else stays private.
MERCHANT_FIELDS = ("address", "email", "phone", "website", "tax_id")


def locale_or_default(value: str | None, default: str = DEFAULT_LOCALE) -> str:
    """A locale babel knows ("de_DE", "fr-CA"...), else the default."""
    if value:
        try:
            return str(Locale.parse(value.replace("-", "_")))
        except (UnknownLocaleError, ValueError, TypeError):
            pass
    return default


def format_money(money: Money, locale: str) -> str:
    """"$1,234.50", "1.234,50 €", "¥1,000": the currency's own digits (decimal_quantization
    off, so a digit Stripe's exponent keeps is never rounded away by CLDR's)."""
    return format_currency(Decimal(money.to_api()), money.currency.upper(), locale=locale,
                           decimal_quantization=False)


def format_when(moment: datetime, locale: str, timezone: str = "UTC") -> str:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return format_datetime(moment, format="long", tzinfo=zone, locale=locale)


@dataclass(frozen=True)
class Merchant:
    name: str
    address_lines: tuple[str, ...] = ()
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    tax_id: str | None = None

    @classmethod
    def from_account(cls, name: str, details: Mapping[str, Any] | None) -> Merchant:
        details = details or {}
        address = details.get("address")
        if isinstance(address, str):
            lines = tuple(line.strip() for line in address.splitlines() if line.strip())
        elif isinstance(address, Sequence):
            lines = tuple(str(line) for line in address if str(line).strip())
        elif isinstance(address, Mapping):
            lines = tuple(str(address[k]) for k in ("line1", "line2", "postal_code", "city", "state", "country")
                          if address.get(k))
        else:
            lines = ()

        def text(key: str) -> str | None:
            value = details.get(key)
            return str(value) if value else None

        return cls(name=str(details.get("display_name") or details.get("name") or name), address_lines=lines,
                   email=text("email"), phone=text("phone"), website=text("website"), tax_id=text("tax_id"))


@dataclass(frozen=True)
class MethodShown:
    """Brand and last 4, or the bank method's label: never more."""

    type: str | None
    brand: str | None
    last4: str | None
    label: str | None

    @classmethod
    def from_details(cls, details: Mapping[str, Any] | None) -> MethodShown:
        details = details or {}
        card = details.get("card") or {}
        return cls(type=details.get("type"), brand=card.get("brand"), last4=card.get("last4"),
                   label=details.get("label") or _card_label(card.get("brand"), card.get("last4")))


def _card_label(brand: str | None, last4: str | None) -> str | None:
    if not brand:
        return None
    return f"{brand.title()} ••••{last4}" if last4 else brand.title()


@dataclass(frozen=True)
class RefundLine:
    id: uuid.UUID
    amount: Money
    status: str
    created_at: datetime


@dataclass(frozen=True)
class Receipt:
    number: str
    payment_id: uuid.UUID
    status: str
    merchant: Merchant
    customer_name: str | None
    customer_email: str | None
    paid_at: datetime
    description: str | None
    amount: Money
    method: MethodShown
    refunds: tuple[RefundLine, ...]
    locale: str = DEFAULT_LOCALE
    timezone: str = "UTC"

    @property
    def refunded(self) -> Money:
        return Money(sum(r.amount.minor for r in self.refunds), self.amount.currency)

    @property
    def net(self) -> Money:
        return Money(self.amount.minor - self.refunded.minor, self.amount.currency)

    def money(self, value: Money) -> str:
        return format_money(value, self.locale)

    def when(self, moment: datetime) -> str:
        return format_when(moment, self.locale, self.timezone)

    def as_json(self) -> dict[str, Any]:
        """The JSON representation (GET .../receipt with Accept: application/json)."""
        return {
            "object": "receipt",
            "receipt_number": self.number,
            "payment_id": str(self.payment_id),
            "status": self.status,
            "merchant": {
                "name": self.merchant.name,
                "address": list(self.merchant.address_lines),
                "email": self.merchant.email,
                "phone": self.merchant.phone,
                "website": self.merchant.website,
                "tax_id": self.merchant.tax_id,
            },
            "customer": {"name": self.customer_name, "email": self.customer_email},
            "paid_at": self.paid_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "paid_at_formatted": self.when(self.paid_at),
            "description": self.description,
            "amount": self.amount.to_api(),
            "currency": self.amount.currency,
            "amount_formatted": self.money(self.amount),
            "payment_method": {"type": self.method.type, "brand": self.method.brand, "last4": self.method.last4,
                               "label": self.method.label},
            "refunds": [
                {
                    "id": str(r.id),
                    "amount": r.amount.to_api(),
                    "amount_formatted": self.money(r.amount),
                    "status": r.status,
                    "created_at": r.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                    "created_at_formatted": self.when(r.created_at),
                }
                for r in self.refunds
            ],
            "amount_refunded": self.refunded.to_api(),
            "amount_refunded_formatted": self.money(self.refunded),
            "net_amount": self.net.to_api(),
            "net_amount_formatted": self.money(self.net),
            "locale": self.locale,
        }
