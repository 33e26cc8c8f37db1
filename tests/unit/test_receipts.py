"""Receipts without I/O: formatting, the contents, HTML escaping, PDF bytes, Accept negotiation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from paymentd.errors import InvalidRequest
from paymentd.money import Money
from paymentd.receipts import render
from paymentd.receipts.receipt import Merchant, MethodShown, Receipt, RefundLine, format_money, locale_or_default
from paymentd.receipts.routes import negotiate

PAID = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)


def receipt(**changes) -> Receipt:  # type: ignore[no-untyped-def]
    values = dict(
        number="000042",
        payment_id=uuid.UUID(int=1),
        status="partially_refunded",
        merchant=Merchant.from_account("acct", {"display_name": "Café <Zürich> & Co", "address": "Bahnhofstr. 1\n8001 Zürich",
                                                "email": "help@cafe.example", "secret_key": "never printed"}),
        customer_name="Ann Ö'Brien",
        customer_email="ann@example.com",
        paid_at=PAID,
        description="2 × espresso <b>",
        amount=Money(1999, "eur"),
        method=MethodShown.from_details({"type": "card", "label": "Visa ••••4242",
                                         "card": {"brand": "visa", "last4": "4242", "exp_month": 12}}),
        refunds=(RefundLine(uuid.UUID(int=2), Money(500, "eur"), "succeeded", PAID),),
        locale="en_US",
    )
    values.update(changes)
    return Receipt(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("minor", "currency", "locale", "shown"),
    [
        (123450, "usd", "en_US", "$1,234.50"),
        (123450, "eur", "de_DE", "1.234,50\xa0€"),
        (1000, "jpy", "en_US", "¥1,000"),
        (1500, "kwd", "en_US", "KWD1.500"),
        (500000, "isk", "en_US", "ISK5,000"),
    ],
)
def test_amounts_are_formatted_by_locale(minor: int, currency: str, locale: str, shown: str) -> None:
    assert format_money(Money(minor, currency), locale) == shown


def test_locale_falls_back() -> None:
    assert locale_or_default("fr-CA") == "fr_CA"
    assert locale_or_default("xx_NOPE") == "en_US"
    assert locale_or_default(None, "de_DE") == "de_DE"


def test_contents_and_net_amount() -> None:
    body = receipt().as_json()
    assert body["receipt_number"] == "000042"
    assert body["merchant"]["name"] == "Café <Zürich> & Co"
    assert body["merchant"]["address"] == ["Bahnhofstr. 1", "8001 Zürich"]
    assert "never printed" not in str(body)
    assert body["amount"] == "19.99" and body["amount_formatted"] == "€19.99"
    assert body["payment_method"] == {"type": "card", "brand": "visa", "last4": "4242", "label": "Visa ••••4242"}
    assert body["refunds"][0]["amount"] == "5.00"
    assert body["net_amount"] == "14.99" and body["net_amount_formatted"] == "€14.99"
    assert body["paid_at"] == "2026-03-14T15:09:26Z"
    assert "March 14, 2026" in body["paid_at_formatted"]


def test_html_escapes_merchant_and_customer_text() -> None:
    page = render.html(receipt())
    assert "Café &lt;Zürich&gt; &amp; Co" in page
    assert "<b>" not in page and "2 × espresso &lt;b&gt;" in page
    assert "Ann Ö&#39;Brien" in page
    assert "#000042" in page and "€19.99" in page and "−€5.00" in page and "€14.99" in page
    assert "Visa ••••4242" in page


def test_text_part() -> None:
    body = render.text(receipt())
    assert "Receipt #000042" in body and "Net amount       €14.99" in body


def test_pdf_is_a_pdf_and_survives_non_latin_text() -> None:
    data = render.pdf(receipt(customer_name="Анна 李", merchant=Merchant("Ελληνικά €")))
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(data) > 1000


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, "application/json"),
        ("", "application/json"),
        ("*/*", "application/json"),
        ("application/pdf", "application/pdf"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
        ("text/*", "text/html"),
        ("application/pdf;q=0.5, application/json;q=0.4", "application/pdf"),
        ("image/png, */*;q=0.1", "application/json"),
    ],
)
def test_accept_negotiation(accept: str | None, chosen: str) -> None:
    assert negotiate(accept) == chosen


@pytest.mark.parametrize("accept", ["image/png", "text/csv", "application/xml", "application/json;q=0", "nonsense"])
def test_unacceptable(accept: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        negotiate(accept)
    assert raised.value.status == 406 and raised.value.code == "not_acceptable"
