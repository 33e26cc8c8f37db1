"""Does a processor's report agree with the payment it names? Checked before applying.

A correctly signed webhook can still be wrong (a replay from another account or mode,
a leaked signing secret, a processor bug), and a wrong amount or currency, once applied,
shows money that never moved. Every report (PaymentIntents, refunds, disputes; from
webhooks, the reconciler, verification and our own calls' answers) is checked here, in
paymentd's words, and an inconsistent one is refused whole: nothing of it is applied.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from paymentd.payments.models import Payment
from paymentd.providers.base import ProviderEvent, ProviderPayment, ProviderRefund

REFUSED = "refused: inconsistent"


@dataclass(frozen=True)
class Inconsistency:
    """What disagrees (`field`, in paymentd's words) and how, for the inbox row and the log."""

    field: str
    detail: str

    @property
    def outcome(self) -> str:
        return f"{REFUSED} {self.field} ({self.detail})"


class InconsistentReport(Exception):
    """A report that does not agree with its payment, raised where it is applied (refunds,
    disputes): the transaction rolls back, the caller records the refusal and has the
    payment verified with the processor."""

    def __init__(self, payment_id: uuid.UUID, inconsistency: Inconsistency) -> None:
        super().__init__(inconsistency.outcome)
        self.payment_id = payment_id
        self.inconsistency = inconsistency


@dataclass(frozen=True)
class Origin:
    """The processor account paymentd's own events come from: its mode (live or test)
    and, for an account acting on another's behalf, that account. paymentd acts on its
    own account only, so an event naming any account is not about its payments."""

    livemode: bool
    account: str | None = None

    @classmethod
    def of(cls, provider: Any) -> Origin:
        return cls(livemode=bool(getattr(provider, "livemode", False)))


def of_origin(event: ProviderEvent, origin: Origin) -> Inconsistency | None:
    """The event comes from paymentd's own processor account, in its mode."""
    if event.livemode != origin.livemode:
        return Inconsistency("mode", f"a {_mode(event.livemode)} event, paymentd is in {_mode(origin.livemode)} mode")
    if event.account != origin.account:
        return Inconsistency("account", f"event from account {event.account!r}")
    return None


def of_payment(payment: Payment, intent: ProviderPayment) -> Inconsistency | None:
    """The processor's payment is this payment, in its currency and amount, and never
    received or holds more than that amount."""
    if payment.stripe_payment_intent_id is not None and intent.id != payment.stripe_payment_intent_id:
        return Inconsistency("payment_intent", f"{intent.id} reported for {payment.stripe_payment_intent_id}")
    ours = intent.metadata.get("paymentd_payment_id")
    if ours is not None and ours != str(payment.id):
        return Inconsistency("payment", "the processor's payment names another paymentd payment")
    if (bad := _money(payment, intent.amount, intent.currency, "amount", exact=True)) is not None:
        return bad
    for field, value in (("amount_received", intent.amount_received), ("amount_capturable", intent.amount_capturable)):
        if not 0 <= value <= payment.amount:
            return Inconsistency(field, f"{value} reported, the payment is {payment.amount}")
    return None


def of_refund(
    payment: Payment, refund: ProviderRefund, *, recorded_amount: int | None, refunded_besides: int
) -> Inconsistency | None:
    """A refund of this payment, in its currency, no larger than what is left of it:
    `recorded_amount` is what paymentd asked for (None for a refund made elsewhere),
    `refunded_besides` what the payment's other refunds already took."""
    if refund.payment_id and payment.stripe_payment_intent_id and refund.payment_id != payment.stripe_payment_intent_id:
        return Inconsistency("payment_intent", f"refund of {refund.payment_id} reported for this payment")
    if (bad := _money(payment, refund.amount, refund.currency, "refund amount")) is not None:
        return bad
    if recorded_amount is not None and refund.amount != recorded_amount:
        return Inconsistency("refund amount", f"{refund.amount} reported, {recorded_amount} was refunded")
    if refunded_besides + refund.amount > payment.amount:
        return Inconsistency("refund amount", f"{refund.amount} on top of {refunded_besides} refunded exceeds "
                                              f"the payment's {payment.amount}")
    return None


def of_dispute(payment: Payment, *, intent_id: str | None, amount: int, currency: str) -> Inconsistency | None:
    """A dispute of this payment, in its currency, for at most its amount."""
    if intent_id and payment.stripe_payment_intent_id and intent_id != payment.stripe_payment_intent_id:
        return Inconsistency("payment_intent", f"dispute of {intent_id} reported for this payment")
    return _money(payment, amount, currency, "dispute amount")


def of_review(payment: Payment, *, intent_id: str | None) -> Inconsistency | None:
    """A processor's review of this payment."""
    if intent_id and payment.stripe_payment_intent_id and intent_id != payment.stripe_payment_intent_id:
        return Inconsistency("payment_intent", f"review of {intent_id} reported for this payment")
    return None


def of_fraud_warning(payment: Payment, *, intent_id: str | None) -> Inconsistency | None:
    """An issuer's warning about this payment, which it can only send about money that moved:
    a payment canceled without a capture was never charged."""
    if intent_id and payment.stripe_payment_intent_id and intent_id != payment.stripe_payment_intent_id:
        return Inconsistency("payment_intent", f"warning about {intent_id} reported for this payment")
    if payment.status == "canceled" and payment.amount_received == 0:
        return Inconsistency("status", "a fraud warning about a payment that was never captured")
    return None


def _money(payment: Payment, amount: int, currency: str, field: str, *, exact: bool = False) -> Inconsistency | None:
    if currency.lower() != payment.currency.lower():
        return Inconsistency("currency", f"{currency or 'none'} reported, the payment is in {payment.currency}")
    if exact and amount != payment.amount:
        return Inconsistency(field, f"{amount} reported, the payment is {payment.amount}")
    if not exact and not 0 < amount <= payment.amount:
        return Inconsistency(field, f"{amount} reported, the payment is {payment.amount}")
    return None


def _mode(live: bool) -> str:
    return "live" if live else "test"
