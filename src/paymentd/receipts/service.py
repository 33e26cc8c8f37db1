"""Loading a payment's receipt: checks, the receipt number, and the Receipt itself.

The number is taken once from the account's counter (`accounts.receipt_seq`,
incremented under its row lock) and stored on the payment, so it is unique within
the account, never reused, and the same on every later request.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paymentd import audit
from paymentd.auth.models import Account
from paymentd.db import Database
from paymentd.errors import Conflict, NotFound
from paymentd.money import Money
from paymentd.payments import repository as payments_repository
from paymentd.payments.models import Payment, PaymentEvent
from paymentd.payments.states import PaymentStatus
from paymentd.receipts.receipt import Merchant, MethodShown, Receipt, RefundLine, locale_or_default
from paymentd.refunds import repository as refunds_repository
from paymentd.refunds.models import HOLDING
from paymentd.users.models import User

# A receipt exists once money was captured: API.md's "succeeded (or refunded)".
RECEIPTED = {PaymentStatus.succeeded, PaymentStatus.partially_refunded, PaymentStatus.refunded,
             PaymentStatus.disputed}


async def receipt_for(
    database: Database, account_id: uuid.UUID, payment_id: uuid.UUID, *, default_locale: str = "en_US"
) -> Receipt:
    """The receipt of one of the account's payments (404 another's, 409 not succeeded)."""
    async with database.transaction() as session:
        payment = await payments_repository.get(session, account_id, payment_id)
        if payment is None:
            raise NotFound("No such payment.", param="id")
        if PaymentStatus(payment.status) not in RECEIPTED:
            raise Conflict(f"A payment in status `{payment.status}` has no receipt yet.", code="invalid_state",
                           param="id")
        if payment.receipt_number is None:
            # Re-read under the lock: another request may have numbered it meanwhile.
            await session.refresh(payment, with_for_update=True)
            await assign_number(session, payment)
        return await build(session, payment, default_locale=default_locale)


async def receipt_by_payment(database: Database, payment_id: uuid.UUID, *, default_locale: str = "en_US") -> Receipt:
    """Unscoped, for background work (the email sender)."""
    async with database.transaction() as session:
        payment = await payments_repository.get_by_id(session, payment_id, lock=True)
        if payment is None:
            raise LookupError(f"no payment {payment_id}")
        await assign_number(session, payment)
        return await build(session, payment, default_locale=default_locale)


async def assign_number(session: AsyncSession, payment: Payment) -> str:
    """The payment's receipt number, taken from the account's counter the first time.
    The caller holds the payment's row lock, so two requests cannot take two numbers."""
    if payment.receipt_number is not None:
        return payment.receipt_number
    seq = await session.scalar(
        update(Account).where(Account.id == payment.account_id)
        .values(receipt_seq=Account.receipt_seq + 1).returning(Account.receipt_seq)
    )
    details = await session.scalar(select(Account.details).where(Account.id == payment.account_id)) or {}
    prefix = str(details.get("receipt_prefix") or "")
    payment.receipt_number = f"{prefix}{seq:06d}"
    audit.record(session, "receipt.issued", account_id=payment.account_id, object_type="payment",
                 object_id=payment.id, changes={"receipt_number": (None, payment.receipt_number)})
    return payment.receipt_number


async def build(session: AsyncSession, payment: Payment, *, default_locale: str) -> Receipt:
    account = await session.get(Account, payment.account_id)
    user = await session.get(User, payment.user_id)
    paid_at = await session.scalar(
        select(PaymentEvent.created_at)
        .where(PaymentEvent.payment_id == payment.id, PaymentEvent.to_status == PaymentStatus.succeeded.value)
        .order_by(PaymentEvent.id).limit(1)
    )
    refunds = [
        RefundLine(id=r.id, amount=Money.from_minor(r.amount, r.currency), status=r.status, created_at=r.created_at)
        for r in await refunds_repository.for_payment(session, payment.id)
        # What Stripe accepted and did not fail: the same sum as payments.amount_refunded.
        if r.status in HOLDING and r.provider_refund_id is not None
    ]
    details = account.details or {}
    return Receipt(
        number=payment.receipt_number or "",
        payment_id=payment.id,
        status=payment.status,
        merchant=Merchant.from_account(account.name, details),
        customer_name=user.name if user else None,
        customer_email=payment.receipt_email or (user.email if user else None),
        paid_at=paid_at or payment.updated_at,
        description=payment.description,
        amount=Money.from_minor(payment.amount_received or payment.amount, payment.currency),
        method=MethodShown.from_details(payment.payment_method_details),
        refunds=tuple(refunds),
        locale=locale_or_default(details.get("locale"), locale_or_default(default_locale)),
        timezone=str(details.get("timezone") or "UTC"),
    )
