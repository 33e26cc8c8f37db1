"""The receipt email end to end: a payment with `receipt_email` succeeds through the API,
`sync.move` queues the email, and the queue's periodic `paymentd.send_receipts` job
delivers it to a local SMTP server (aiosmtpd) started here; SMTP failures are retried."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import update

from paymentd.app import build_provider
from paymentd.config import Settings
from paymentd.db import Database
from paymentd.jobs.deps import Deps
from paymentd.jobs.queue import RECEIPTS_QUEUE, Jobs, stop_worker
from paymentd.receipts import email as receipt_email
from paymentd.receipts.models import ReceiptEmail
from tests.conftest import Merchant

pytestmark = pytest.mark.asyncio


class _Mailbox:
    """An aiosmtpd handler: refuses (451) the first `refuse[recipient]` messages to a recipient."""

    def __init__(self) -> None:
        self.refuse: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        for rcpt in envelope.rcpt_tos:
            if self.refused.get(rcpt, 0) < self.refuse.get(rcpt, 0):
                self.refused[rcpt] = self.refused.get(rcpt, 0) + 1
                return "451 4.3.0 Try again later"
        self.messages.append(email.message_from_bytes(envelope.content, _class=EmailMessage,
                                                      policy=email.policy.default))
        return "250 OK"

    def to(self, recipient: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == recipient]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mailbox() -> Any:
    from aiosmtpd.controller import Controller

    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    yield box
    controller.stop()


def _with_smtp(settings: Settings, port: int | None) -> Settings:
    if port is None:
        return settings.model_copy(update={"smtp_host": None, "smtp_from": None})
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port,
                                       "smtp_from": "receipts@shop.example", "smtp_timeout_s": 5.0})


@pytest.fixture
async def worker_for(settings: Settings, database: Database, database_url: str
                     ) -> AsyncIterator[Callable[..., Any]]:
    """Start a worker on the receipts queue with SMTP on `port` (None: not configured),
    its periodic sender firing every second. Stopped at the end of the test."""
    running: list[tuple[Jobs, asyncio.Task, Any]] = []

    async def start(port: int | None) -> Jobs:
        smtp_settings = _with_smtp(settings, port)
        provider = build_provider(smtp_settings)
        jobs = Jobs(database_url, receipt_interval_s=1)
        await jobs.open()
        task = asyncio.create_task(jobs.run_worker(Deps(database, provider, smtp_settings), concurrency=1,
                                                   queues=[RECEIPTS_QUEUE]))
        running.append((jobs, task, provider))
        return jobs

    yield start
    for jobs, task, provider in running:
        await stop_worker(task)
        assert task.done()
        await jobs.close()
        await provider.aclose()


async def paid(merchant: Merchant, receipt_to: str | None, amount: str = "9.99") -> dict:
    user = await merchant.user()
    fields = {"receipt_email": receipt_to} if receipt_to else {}
    created = await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": amount, "description": "Tea", **fields})
    assert created.status_code == 201, created.text
    confirmed = await merchant.client.post("/api/payments/confirm", json={
        "payment_id": created.json()["id"], "payment_method": "pm_card_visa"})
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "succeeded", confirmed.text
    return confirmed.json()


async def row_of(database: Database, payment_id: str) -> ReceiptEmail | None:
    async with database.transaction() as session:
        return await session.get(ReceiptEmail, uuid.UUID(payment_id))


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"condition not met within {timeout} s (last: {result!r})"
        await asyncio.sleep(0.1)


def recipient() -> str:
    return f"buyer-{uuid.uuid4().hex[:8]}@example.com"


async def make_due(database: Database, payment_id: str, **values: Any) -> None:
    """Let the row's backoff pass (instead of waiting its 30 s or more)."""
    async with database.transaction() as session:
        await session.execute(update(ReceiptEmail).where(ReceiptEmail.payment_id == uuid.UUID(payment_id))
                              .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1), **values))


async def test_a_succeeded_payment_is_queued_once_and_emailed_by_the_periodic_job(
    merchant: Merchant, database: Database, mailbox, worker_for
) -> None:
    to = recipient()
    payment = await paid(merchant, to)
    # Queued by sync.move in the transaction that made it succeed, before any worker ran.
    row = await row_of(database, payment["id"])
    assert row is not None and row.status == "queued" and row.recipient == to and row.attempts == 0

    await worker_for(mailbox.port)
    await eventually(lambda: _status_is(database, payment["id"], "sent"))
    [mail] = mailbox.to(to)
    number = (await merchant.client.get(f"/api/payments/{payment['id']}")).json()["receipt_number"]
    assert number and f"#{number}" in mail["Subject"]
    assert "receipts@shop.example" in mail["From"] and "$9.99" in mail.get_body(("plain",)).get_content()
    [pdf] = [p for p in mail.iter_attachments() if p.get_content_type() == "application/pdf"]
    assert pdf.get_content().startswith(b"%PDF-")
    row = await row_of(database, payment["id"])
    assert row.attempts == 1 and row.sent_at is not None and row.last_error is None

    # Sent once: later runs of the job, and a refund moving the payment on, send nothing more.
    refund = await merchant.client.post("/api/payments/refund", json={"payment_id": payment["id"], "amount": "1.00"})
    assert refund.status_code == 201, refund.text
    await asyncio.sleep(2.5)
    assert len(mailbox.to(to)) == 1
    assert (await row_of(database, payment["id"])).status == "sent"


async def test_an_smtp_refusal_is_retried_with_backoff(merchant: Merchant, database: Database, mailbox,
                                                       worker_for) -> None:
    to = recipient()
    mailbox.refuse[to] = 1
    payment = await paid(merchant, to)
    await worker_for(mailbox.port)

    async def refused_once() -> ReceiptEmail | None:
        row = await row_of(database, payment["id"])
        return row if row.attempts == 1 else None

    row = await eventually(refused_once)
    assert row.status == "queued" and "451" in row.last_error
    assert row.next_attempt_at > datetime.now(UTC) + timedelta(seconds=10)  # backoff, not a hot loop
    assert mailbox.to(to) == []

    await make_due(database, payment["id"])
    await eventually(lambda: _status_is(database, payment["id"], "sent"))
    assert len(mailbox.to(to)) == 1 and (await row_of(database, payment["id"])).attempts == 2


async def test_an_unreachable_smtp_server_keeps_the_email_queued_then_dead_letters_it(
    merchant: Merchant, database: Database, worker_for
) -> None:
    payment = await paid(merchant, recipient())
    await worker_for(_free_port())  # nobody listens there

    async def tried() -> ReceiptEmail | None:
        row = await row_of(database, payment["id"])
        return row if row.attempts >= 1 else None

    row = await eventually(tried)
    assert row.status == "queued" and row.last_error and row.sent_at is None

    # The last allowed attempt fails too: the row becomes the visible dead letter.
    await make_due(database, payment["id"], attempts=receipt_email.MAX_ATTEMPTS - 1)
    await eventually(lambda: _status_is(database, payment["id"], "failed"))
    assert (await row_of(database, payment["id"])).attempts == receipt_email.MAX_ATTEMPTS


async def test_without_smtp_configured_the_email_is_skipped(merchant: Merchant, database: Database,
                                                            worker_for) -> None:
    payment = await paid(merchant, recipient())
    await worker_for(None)
    await eventually(lambda: _status_is(database, payment["id"], "skipped"))
    assert "not configured" in (await row_of(database, payment["id"])).last_error


async def test_no_receipt_email_means_nothing_queued(merchant: Merchant, database: Database) -> None:
    payment = await paid(merchant, None)
    assert await row_of(database, payment["id"]) is None


async def test_a_declined_payment_queues_nothing(merchant: Merchant, database: Database) -> None:
    user = await merchant.user()
    created = (await merchant.client.post("/api/payments/create", json={
        "user_id": user["id"], "amount": "3.00", "receipt_email": recipient()})).json()
    declined = await merchant.client.post("/api/payments/confirm", json={
        "payment_id": created["id"], "payment_method": "pm_card_chargeDeclined"})
    assert declined.status_code == 402
    assert await row_of(database, created["id"]) is None


async def _status_is(database: Database, payment_id: str, wanted: str) -> bool:
    row = await row_of(database, payment_id)
    return row is not None and row.status == wanted
