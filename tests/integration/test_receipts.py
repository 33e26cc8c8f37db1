"""Receipts through the HTTP API (JSON, HTML, PDF by Accept), how they look (PDF rendered
to PNG by poppler's pdftoppm, HTML in headless Chromium), and the receipt email sent
to a local SMTP server (aiosmtpd) started by the test."""

from __future__ import annotations

import asyncio
import email
import shutil
import socket
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import update

from paymentd.auth.keys import Scope
from paymentd.auth.models import Account
from paymentd.db import Database
from paymentd.payments import repository as payments_repository
from paymentd.receipts import email as receipt_email
from paymentd.receipts.models import ReceiptEmail
from tests.conftest import Merchant, make_key

DETAILS = {"display_name": "Bäckerei <Müller> & Söhne", "address": ["Hauptstraße 5", "10115 Berlin"],
           "email": "kasse@baeckerei.example", "tax_id": "DE123456789"}


async def paid(merchant: Merchant, amount: str = "25.00", **fields) -> dict:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    created = await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": amount, "description": "Sourdough <loaf>", **fields})
    assert created.status_code == 201, created.text
    confirmed = await merchant.client.post("/api/payments/confirm", json={
        "payment_id": created.json()["id"], "payment_method": "pm_card_visa"})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return confirmed.json()


async def set_details(database: Database, merchant: Merchant, details: dict) -> None:
    async with database.transaction() as session:
        await session.execute(update(Account).where(Account.id == merchant.account_id).values(details=details))


async def receipt(merchant: Merchant, payment_id: str, accept: str | None = None) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return await merchant.client.get(f"/api/payments/{payment_id}/receipt", headers=headers)


async def test_json_receipt_with_refunds(merchant: Merchant, database: Database) -> None:
    await set_details(database, merchant, DETAILS)
    payment = await paid(merchant, "25.00")
    await merchant.client.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "5.50"})

    response = await receipt(merchant, payment["id"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["receipt_number"] == "000001"  # a fresh account's first
    assert body["merchant"]["name"] == "Bäckerei <Müller> & Söhne"
    assert body["merchant"]["address"] == ["Hauptstraße 5", "10115 Berlin"]
    assert body["customer"] == {"name": "Ann", "email": "ann@example.com"}
    assert body["description"] == "Sourdough <loaf>"
    assert body["amount"] == "25.00" and body["amount_formatted"] == "$25.00"
    assert body["payment_method"]["brand"] == "visa" and body["payment_method"]["last4"] == "4242"
    assert body["payment_method"]["label"] == "Visa ••••4242"
    assert [r["amount"] for r in body["refunds"]] == ["5.50"]
    assert body["net_amount"] == "19.50"
    assert body["status"] == "partially_refunded"

    # The number is kept: same on every request, shown on the payment, next one is +1.
    assert (await receipt(merchant, payment["id"])).json()["receipt_number"] == "000001"
    assert (await merchant.client.get(f"/api/payments/{payment['id']}")).json()["receipt_number"] == "000001"
    other = await paid(merchant, "3.00")
    assert (await receipt(merchant, other["id"])).json()["receipt_number"] == "000002"


async def test_receipt_numbers_are_unique_under_concurrency(merchant: Merchant) -> None:
    payments = [await paid(merchant, "1.00") for _ in range(6)]
    # Each payment asked for three times at once: one number per payment, none shared.
    responses = await asyncio.gather(*(receipt(merchant, p["id"]) for p in payments for _ in range(3)))
    numbers: dict[str, set[str]] = {}
    for p, r in zip([p for p in payments for _ in range(3)], responses, strict=True):
        assert r.status_code == 200, r.text
        numbers.setdefault(p["id"], set()).add(r.json()["receipt_number"])
    assert all(len(n) == 1 for n in numbers.values())
    assert sorted(n.pop() for n in numbers.values()) == [f"{i:06d}" for i in range(1, 7)]


async def test_refusals(merchant: Merchant, database: Database, paymentd) -> None:  # type: ignore[no-untyped-def]
    user = await merchant.user()
    unpaid = (await merchant.client.post("/api/payments/create", json={"user_id": user["id"],
                                                                        "amount": "5.00"})).json()
    early = await receipt(merchant, unpaid["id"])
    assert early.status_code == 409 and early.json()["error"]["code"] == "invalid_state"
    assert (await merchant.client.get(f"/api/payments/{unpaid['id']}")).json()["receipt_number"] is None

    payment = await paid(merchant)
    unacceptable = await receipt(merchant, payment["id"], "image/png")
    assert unacceptable.status_code == 406
    assert unacceptable.json()["error"]["code"] == "not_acceptable"
    assert (await receipt(merchant, str(uuid.uuid4()))).status_code == 404

    _, key = await make_key(database, f"other-{uuid.uuid4().hex[:8]}", list(Scope))
    async with httpx.AsyncClient(base_url=paymentd.url, headers={"Authorization": f"Bearer {key}"}) as other:
        theirs = await other.get(f"/api/payments/{payment['id']}/receipt")
    assert theirs.status_code == 404


def _ink(png: Path) -> float:
    """Share of pixels that are not (near) white."""
    image = Image.open(png).convert("L")
    histogram = image.histogram()
    return sum(histogram[:200]) / (image.width * image.height)


@pytest.mark.skipif(shutil.which("pdftoppm") is None,
                    reason="pdftoppm missing: install Debian's poppler-utils (see .ci/run) to render the PDF")
async def test_pdf_receipt_renders(merchant: Merchant, database: Database, tmp_path: Path) -> None:
    await set_details(database, merchant, DETAILS)
    payment = await paid(merchant)
    response = await receipt(merchant, payment["id"], "application/pdf")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    (tmp_path / "receipt.pdf").write_bytes(response.content)
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-singlefile", str(tmp_path / "receipt.pdf"),
                    str(tmp_path / "page")], check=True, timeout=60)
    ink = _ink(tmp_path / "page.png")
    assert 0.005 < ink < 0.5, f"the page looks blank or black ({ink:.4f} ink)"
    text = subprocess.run(["pdftotext", str(tmp_path / "receipt.pdf"), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    for expected in ("Bäckerei <Müller> & Söhne", "$25.00", "Visa ••••4242", "Receipt #0000"):
        assert expected in text, text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None,
                    reason="headless Chromium missing: install Debian's chromium package (see .ci/run)")
async def test_html_receipt_in_a_browser(merchant: Merchant, database: Database, tmp_path: Path) -> None:
    await set_details(database, merchant, DETAILS)
    payment = await paid(merchant)
    response = await receipt(merchant, payment["id"], "text/html,application/xhtml+xml,*/*;q=0.8")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Bäckerei &lt;Müller&gt; &amp; Söhne" in response.text  # escaped, not markup
    page = tmp_path / "receipt.html"
    page.write_text(response.text, encoding="utf-8")
    browser = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    # What the browser built: the merchant's name is text, no injected element.
    assert "<müller>" not in dom.lower() and "Bäckerei &lt;Müller&gt; &amp; Söhne" in dom
    assert 'id="receipt-number">#0000' in dom and "$25.00" in dom and "Visa ••••4242" in dom
    subprocess.run([*browser, f"--screenshot={tmp_path / 'shot.png'}", "--window-size=800,900", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    ink = _ink(tmp_path / "shot.png")
    assert 0.005 < ink < 0.5, f"the page looks blank ({ink:.4f} ink)"


# --------------------------------------------------------------------------- email


class _Inbox:
    """An aiosmtpd handler: refuses the first `fail_first` messages (451), keeps the rest."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.messages: list[EmailMessage] = []
        self.refused = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def] # noqa: N802
        if self.refused < self.fail_first:
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(email.message_from_bytes(envelope.content, _class=EmailMessage,
                                                      policy=email.policy.default))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp_server():  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    inbox = _Inbox(fail_first=1)
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, receipt_email.SmtpSettings(host="127.0.0.1", port=controller.port, sender="receipts@shop.example",
                                            timeout_s=5)
    controller.stop()


async def _queued(database: Database, payment_id: str) -> ReceiptEmail | None:
    async with database.transaction() as session:
        return await session.get(ReceiptEmail, uuid.UUID(payment_id))


async def _queue_if_not_hooked(database: Database, payment_id: str) -> None:
    """sync.move queues the email once wired (receipts.email.note_status_move); until then, here."""
    if await _queued(database, payment_id) is None:
        async with database.transaction() as session:
            await receipt_email.enqueue(session, await payments_repository.get_by_id(session, uuid.UUID(payment_id)))


async def test_receipt_is_emailed_and_retried(merchant: Merchant, database: Database, smtp_server) -> None:  # type: ignore[no-untyped-def]
    inbox, smtp = smtp_server
    await set_details(database, merchant, DETAILS)
    payment = await paid(merchant, "9.99", receipt_email="buyer@example.com")
    await _queue_if_not_hooked(database, payment["id"])

    # First attempt: the server says 451. The row stays queued, with a later retry.
    first = await receipt_email.send_due(database, smtp)
    assert first["retrying"] >= 1 and inbox.refused == 1 and inbox.messages == []
    row = await _queued(database, payment["id"])
    assert row.status == "queued" and row.attempts == 1 and "451" in row.last_error
    assert row.next_attempt_at > datetime.now(UTC)

    # The retry, once due, goes through.
    second = await receipt_email.send_due(database, smtp, now=datetime.now(UTC) + timedelta(hours=2))
    assert second["sent"] >= 1
    row = await _queued(database, payment["id"])
    assert row.status == "sent" and row.sent_at is not None and row.attempts == 2
    [mail] = [m for m in inbox.messages if m["To"] == "buyer@example.com"]
    number = (await receipt(merchant, payment["id"])).json()["receipt_number"]
    assert f"#{number}" in mail["Subject"] and "Bäckerei" in mail["Subject"]
    assert "receipts@shop.example" in mail["From"]
    html = mail.get_body(("html",)).get_content()
    assert "Bäckerei &lt;Müller&gt; &amp; Söhne" in html and "$9.99" in html
    assert "$9.99" in mail.get_body(("plain",)).get_content()
    [pdf] = [part for part in mail.iter_attachments() if part.get_content_type() == "application/pdf"]
    assert pdf.get_content().startswith(b"%PDF-")

    # Sent once: a later sweep sends nothing more.
    await receipt_email.send_due(database, smtp, now=datetime.now(UTC) + timedelta(hours=4))
    assert len([m for m in inbox.messages if m["To"] == "buyer@example.com"]) == 1


async def test_no_smtp_configured_means_no_email(merchant: Merchant, database: Database) -> None:
    payment = await paid(merchant, "2.00", receipt_email="quiet@example.com")
    await _queue_if_not_hooked(database, payment["id"])
    assert await receipt_email.send_one(database, None, uuid.UUID(payment["id"])) == "skipped"
    assert (await _queued(database, payment["id"])).status == "skipped"


async def test_no_receipt_email_means_nothing_queued(merchant: Merchant, database: Database) -> None:
    payment = await paid(merchant, "2.00")
    await _queue_if_not_hooked(database, payment["id"])
    assert await _queued(database, payment["id"]) is None
