"""Emailing receipts: the outbox row written when a payment succeeds, and its sender.

`note_status_move` is called where a payment's status moves (payments/sync.py): on
the first move to `succeeded` of a payment with a `receipt_email`, it queues an
outbox row in that same transaction. `send_due` (periodic job) and `send_one`
(a job per payment) deliver queued rows over SMTP, retrying with backoff; a
receipt mail is sent at least once, and the outbox makes "more than once" rare.
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import ssl
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit
from paymentd import crypto
from paymentd.db import Database, RowSink
from paymentd.logs import log
from paymentd.payments.models import Payment
from paymentd.payments.states import CHARGE_FINAL, PaymentStatus
from paymentd.receipts import render
from paymentd.receipts.models import ReceiptEmail
from paymentd.receipts.receipt import Receipt
from paymentd.receipts.service import receipt_by_payment

QUEUED, SENT, SKIPPED, FAILED = "queued", "sent", "skipped", "failed"
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30.0
BACKOFF_CAP_S = 3600.0


@dataclass(frozen=True)
class SmtpSettings:
    """Where receipts are sent from. Read from Settings (fields `smtp_*`, see the
    class method); None when SMTP is not configured, and then nothing is emailed."""

    host: str
    sender: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    # "starttls" (upgrade on port 587), "tls" (implicit, port 465) or "none".
    security: str = "none"
    timeout_s: float = 10.0
    locale: str = "en_US"

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpSettings | None:
        host, sender = getattr(settings, "smtp_host", None), getattr(settings, "smtp_from", None)
        if not host or not sender:
            return None
        password = getattr(settings, "smtp_password", None)
        if password is not None and hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        return cls(
            host=host,
            sender=sender,
            port=int(getattr(settings, "smtp_port", None) or 25),
            username=getattr(settings, "smtp_username", None),
            password=password,
            security=str(getattr(settings, "smtp_security", None) or "none"),
            timeout_s=float(getattr(settings, "smtp_timeout_s", None) or 10.0),
            locale=str(getattr(settings, "receipt_locale", None) or "en_US"),
        )


class EmailNotSent(Exception):
    """SMTP refused or could not be reached; the row stays queued for a retry."""


# --------------------------------------------------------------------------- queueing


def note_status_move(session: RowSink, payment: Payment, from_status: str | None, to_status: str) -> None:
    """Hook for `sync.move`: queue the receipt email on the payment's first success.

    Synchronous (sync.move is) and safe to call on every move: a payment reaches
    `succeeded` from a charge status only once (the state machine never goes back),
    so the row is added at most once; `disputed -> succeeded` does not queue again.
    """
    if to_status != PaymentStatus.succeeded.value or not payment.receipt_email:
        return
    if from_status is not None and PaymentStatus(from_status) in CHARGE_FINAL:
        return
    session.add(ReceiptEmail(payment_id=payment.id, recipient=payment.receipt_email))


async def enqueue(session: AsyncSession, payment: Payment) -> None:
    """Queue the receipt email now (idempotent): for callers outside sync.move."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    if payment.receipt_email:
        await session.execute(
            pg_insert(ReceiptEmail).values(  # a Core insert: sealed here, not by the ORM hooks
                payment_id=payment.id,
                recipient=crypto.keyring().encrypt(payment.receipt_email, table="receipt_emails",
                                                   column="recipient", row_id=payment.id))
            .on_conflict_do_nothing(index_elements=[ReceiptEmail.payment_id])
        )


# --------------------------------------------------------------------------- sending


def message(receipt: Receipt, sender: str, recipient: str) -> EmailMessage:
    """Plain text, HTML alternative, and the PDF attached."""
    mail = EmailMessage()
    mail["Subject"] = f"Your receipt from {receipt.merchant.name} [#{receipt.number}]"
    mail["From"] = formataddr((receipt.merchant.name, sender))
    mail["To"] = recipient
    mail["Message-ID"] = make_msgid(idstring=f"receipt.{receipt.payment_id}")
    mail.set_content(render.text(receipt))
    mail.add_alternative(render.html(receipt), subtype="html")
    mail.add_attachment(render.pdf(receipt), maintype="application", subtype="pdf",
                        filename=f"receipt-{receipt.number}.pdf")
    return mail


def _deliver(smtp: SmtpSettings, mail: EmailMessage) -> None:
    if smtp.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout_s,
                                                context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s)
    with client:
        if smtp.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        if smtp.username and smtp.password:
            client.login(smtp.username, smtp.password)
        client.send_message(mail)


async def deliver(smtp: SmtpSettings, mail: EmailMessage) -> None:
    """Send over SMTP (smtplib in a thread: no async SMTP client is a dependency)."""
    try:
        await asyncio.to_thread(_deliver, smtp, mail)
    except (smtplib.SMTPException, OSError) as error:
        raise EmailNotSent(f"{type(error).__name__}: {error}"[:300]) from error


async def send_one(database: Database, smtp: SmtpSettings | None, payment_id: uuid.UUID) -> str:
    """Send one queued receipt. Raises EmailNotSent when SMTP fails (the job retries:
    the row records the attempt). Returns the row's outcome otherwise."""
    async with database.transaction() as session:
        row = await session.get(ReceiptEmail, payment_id)
        if row is None or row.status != QUEUED:
            return row.status if row else "none"
        if smtp is None:
            row.status, row.last_error = SKIPPED, "SMTP is not configured"
            return SKIPPED
        recipient = row.recipient
    receipt = await receipt_by_payment(database, payment_id, default_locale=smtp.locale)
    try:
        await deliver(smtp, message(receipt, smtp.sender, recipient))
    except EmailNotSent as error:
        await _record_failure(database, payment_id, str(error))
        log.info("receipt.email_failed", payment_id=str(payment_id), error=str(error))
        raise
    async with database.transaction() as session:
        row = await session.get(ReceiptEmail, payment_id, with_for_update=True)
        before = row.status
        row.status, row.sent_at, row.last_error = SENT, datetime.now(UTC), None
        row.attempts += 1
        await _audit(session, row, "receipt.emailed", before, receipt_number=receipt.number)
    log.info("receipt.emailed", payment_id=str(payment_id), receipt_number=receipt.number)
    return SENT


async def _record_failure(database: Database, payment_id: uuid.UUID, error: str) -> None:
    async with database.transaction() as session:
        row = await session.get(ReceiptEmail, payment_id, with_for_update=True)
        row.attempts += 1
        row.last_error = error
        if row.attempts >= MAX_ATTEMPTS:
            row.status = FAILED  # the dead letter: visible in the table, never silently dropped
            await _audit(session, row, "receipt.email_failed", QUEUED, outcome="failure")
        else:
            ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (row.attempts - 1))
            row.next_attempt_at = datetime.now(UTC) + timedelta(seconds=random.uniform(ceiling / 2, ceiling))


async def _audit(session: AsyncSession, row: ReceiptEmail, action: str, before: str, *,
                 receipt_number: str | None = None, outcome: str = "success") -> None:
    account_id = await session.scalar(select(Payment.account_id).where(Payment.id == row.payment_id))
    changes = {"status": (before, row.status), "recipient": (None, row.recipient)}
    if receipt_number:
        changes["receipt_number"] = (None, receipt_number)
    audit.record(session, action, account_id=account_id, object_type="payment", object_id=row.payment_id,
                 changes=changes, outcome=outcome)


async def send_due(database: Database, smtp: SmtpSettings | None, *, now: datetime | None = None,
                   limit: int = 50) -> dict[str, int]:
    """The periodic sender: every queued row whose next attempt is due. A failure
    is recorded on its row (with backoff) and does not stop the others."""
    now = now or datetime.now(UTC)
    async with database.transaction() as session:
        due = (await session.scalars(
            select(ReceiptEmail.payment_id)
            .where(ReceiptEmail.status == QUEUED, ReceiptEmail.next_attempt_at <= now)
            .order_by(ReceiptEmail.next_attempt_at).limit(limit)
        )).all()
    counts = {SENT: 0, SKIPPED: 0, "retrying": 0}
    for payment_id in due:
        try:
            outcome = await send_one(database, smtp, payment_id)
        except EmailNotSent:
            counts["retrying"] += 1
            continue
        if outcome in counts:
            counts[outcome] += 1
    return counts
