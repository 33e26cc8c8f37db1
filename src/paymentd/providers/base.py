"""The payment-processor boundary: the PaymentProvider protocol and the neutral types it speaks.

Everything above this line talks in these types, so Stripe's names stop at
`providers/stripe.py` and a second processor is one new module. Amounts are integers in minor units.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CardDetails",
    "CardFacts",
    "PaymentError",
    "PaymentMethodInfo",
    "PaymentProvider",
    "ProviderAuthError",
    "ProviderDeclined",
    "ProviderError",
    "ProviderEvent",
    "ProviderFraudWarning",
    "ProviderIdempotencyError",
    "ProviderInvalidRequest",
    "ProviderPayment",
    "ProviderRefund",
    "ProviderReview",
    "ProviderStatus",
    "ProviderUnavailable",
    "RiskAssessment",
    "UnavailableKind",
    "WebhookSignatureError",
]


class ProviderStatus(StrEnum):
    """A processor payment's status, in the processor-neutral vocabulary."""

    requires_payment_method = "requires_payment_method"
    requires_confirmation = "requires_confirmation"
    requires_action = "requires_action"
    processing = "processing"
    requires_capture = "requires_capture"
    succeeded = "succeeded"
    canceled = "canceled"
    # A status we do not recognise (the processor added one). Never persisted:
    # the service treats it as "ask again later" rather than guessing a move.
    unknown = "unknown"


@dataclass(frozen=True)
class CardDetails:
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class CardFacts:
    """What fraud rules may know of a payment method before it is charged; never stored
    with the payment (receipts keep CardDetails). Strings are "" when unknown."""

    type: str
    fingerprint: str = ""
    country: str = ""  # ISO 3166 alpha-2, upper case
    bin: str = ""  # issuer identification number, where the processor exposes it
    brand: str = ""
    funding: str = ""


@dataclass(frozen=True)
class PaymentMethodInfo:
    id: str
    type: str
    card: CardDetails | None
    customer: str | None
    created: datetime | None = None
    # What a receipt prints for any method, cards included ("Visa ••••4242",
    # "SEPA Direct Debit ••••3000"); never more than brand/bank and last 4.
    label: str | None = None


@dataclass(frozen=True)
class PaymentError:
    """Why the last attempt on a payment failed (Stripe's `last_payment_error`)."""

    code: str | None
    decline_code: str | None
    message: str
    payment_method: str | None
    type: str | None


# The processor's fraud verdict, in paymentd's words (API.md "Fraud").
RISK_LEVELS = ("normal", "elevated", "highest", "not_assessed", "unknown")
RISK_OUTCOMES = ("authorized", "manual_review", "issuer_declined", "blocked")


@dataclass(frozen=True)
class RiskAssessment:
    """What the processor's fraud screening made of one charge attempt.

    `level` is one of RISK_LEVELS (anything else the processor says becomes `unknown`),
    `score` 0-100 or None (not every processor account scores), `outcome` one of
    RISK_OUTCOMES or None, `reason`/`rule` the processor's own words for why."""

    level: str
    score: int | None
    outcome: str | None
    reason: str | None = None
    rule: str | None = None

    @property
    def blocked(self) -> bool:
        return self.outcome == "blocked"


@dataclass(frozen=True)
class ProviderPayment:
    id: str
    status: ProviderStatus
    amount: int
    currency: str
    amount_received: int
    amount_capturable: int
    # Kept out of repr so that logging a payment never prints the secret.
    client_secret: str | None = field(repr=False)
    payment_method: str | None
    payment_method_types: tuple[str, ...]
    capture_method: str
    # Passed through to API clients as-is: it is what the client-side SDK needs.
    next_action: dict[str, Any] | None
    last_error: PaymentError | None
    latest_charge: str | None
    # From the expanded latest charge (or payment method), for receipts.
    payment_method_details: PaymentMethodInfo | None
    customer: str | None
    metadata: dict[str, str]
    # The fraud verdict on the latest charge, when the processor reported it (the
    # charge expanded); None when unknown, which never erases a verdict already recorded.
    risk: RiskAssessment | None = None
    # The processor's open manual review of the payment, if any (its id).
    review: str | None = None


@dataclass(frozen=True)
class ProviderReview:
    """A processor's manual review of a payment (Radar's review): opened by its rules,
    closed by an approval here or there, a refund, a cancel or a dispute."""

    id: str
    payment_id: str | None  # the processor's payment (PaymentIntent) id
    open: bool
    opened_reason: str | None
    # approved | refunded | refunded_as_fraud | disputed | redacted | canceled ...; None while open
    closed_reason: str | None
    created: datetime | None


@dataclass(frozen=True)
class ProviderFraudWarning:
    """An issuer's early fraud warning about a captured charge (Radar's early_fraud_warning).
    `actionable` while the charge is neither refunded in full nor disputed."""

    id: str
    payment_id: str | None
    charge: str | None
    fraud_type: str
    actionable: bool
    created: datetime | None


@dataclass(frozen=True)
class MandateAcceptance:
    """The customer's online acceptance of a debit mandate, from their browser or app:
    what Stripe needs to debit a bank account (SEPA, BACS, BECS, ACSS, US accounts)
    on a confirmation sent from a server."""

    ip_address: str
    user_agent: str


@dataclass(frozen=True)
class ProviderRefund:
    id: str
    payment_id: str
    amount: int
    currency: str
    status: str  # pending | succeeded | failed | canceled | requires_action
    failure_reason: str | None
    reason: str | None


@dataclass(frozen=True)
class ProviderEvent:
    id: str
    type: str
    created: datetime
    object_type: str
    # Neutral where we know the object (payment intents, refunds); otherwise the fields
    # of the processor's object that paymentd reads, and nothing more (never the
    # customer's name, email, address or card fingerprint: the inbox stores this).
    object: ProviderPayment | ProviderRefund | ProviderReview | ProviderFraudWarning | dict[str, Any]
    livemode: bool
    # For payment, charge, refund and dispute events: the payment they concern.
    payment_intent_id: str | None
    # The account the event is about when the processor acts for another account
    # (Stripe Connect); None for the processor account's own events.
    account: str | None = None


# --------------------------------------------------------------------------- errors

UnavailableKind = Literal["connection", "timeout", "server", "rate_limited", "conflict"]


class ProviderError(Exception):
    """Base of every failure a provider reports.

    ProviderError(Exception)            message, code, request_id (processor's), http_status
    ├── ProviderDeclined                a decline: decline_code, payment (the payment after it)
    ├── ProviderInvalidRequest          our bug or bad params (param); never retried
    ├── ProviderAuthError               bad API key or missing permission
    ├── ProviderIdempotencyError        key reused with other parameters
    ├── ProviderUnavailable             transient (kind, retry_after); retry with the SAME key
    └── WebhookSignatureError           webhook not verified (bad/stale signature) or unreadable
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.http_status = http_status

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, code={self.code!r}, "
            f"request_id={self.request_id!r}, http_status={self.http_status!r})"
        )


class ProviderDeclined(ProviderError):
    """The payment method was declined. Not retried: the caller may try another method."""

    def __init__(
        self,
        message: str,
        *,
        decline_code: str | None = None,
        payment: ProviderPayment | None = None,
        charge: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.decline_code = decline_code
        # The payment as it stands after the decline (usually requires_payment_method),
        # with the processor's fraud verdict on the failed charge when it could be read.
        self.payment = payment
        # The processor's id of the failed charge, when it made one.
        self.charge = charge


class ProviderInvalidRequest(ProviderError):
    """The processor refused our parameters or the object's state. Never retried."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.param = param


class ProviderAuthError(ProviderError):
    """The API key is wrong, revoked, or lacks a permission."""


class ProviderIdempotencyError(ProviderError):
    """The idempotency key was already used with different parameters."""


class ProviderUnavailable(ProviderError):
    """A transient failure; safe to retry later with the same idempotency key."""

    def __init__(
        self,
        message: str,
        *,
        kind: UnavailableKind,
        retry_after: float | None = None,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, request_id=request_id, http_status=http_status)
        self.kind = kind
        self.retry_after = retry_after


class WebhookSignatureError(ProviderError):
    """A webhook whose signature is missing, wrong, stale, or whose body cannot be read."""


# --------------------------------------------------------------------------- protocol


@runtime_checkable
class PaymentProvider(Protocol):
    """What paymentd needs from a payment processor.

    Every mutating call takes the caller's `idempotency_key` and hands it to the
    processor unchanged, so a retry can never charge or refund twice.
    """

    name: str
    sandbox: bool
    # True when the key moves real money (the mode its events must carry).
    livemode: bool

    async def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str: ...

    async def create_payment(
        self,
        *,
        amount: int,
        currency: str,
        payment_method_types: Sequence[str],
        capture_method: str,
        payment_method: str | None,
        customer: str | None,
        description: str | None,
        receipt_email: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderPayment: ...

    async def confirm_payment(
        self,
        payment_id: str,
        *,
        payment_method: str | None,
        return_url: str | None,
        idempotency_key: str,
        mandate: MandateAcceptance | None = None,
        capture_method: str | None = None,  # "manual": held for review whatever create said
    ) -> ProviderPayment: ...

    async def capture_payment(
        self, payment_id: str, *, amount: int | None, idempotency_key: str
    ) -> ProviderPayment: ...

    async def cancel_payment(
        self, payment_id: str, *, reason: str | None, idempotency_key: str
    ) -> ProviderPayment: ...

    async def retrieve_payment(self, payment_id: str) -> ProviderPayment: ...

    async def approve_review(self, review_id: str, *, idempotency_key: str) -> ProviderReview: ...

    async def retrieve_review(self, review_id: str) -> ProviderReview: ...

    async def create_refund(
        self,
        *,
        payment_id: str,
        amount: int | None,
        reason: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderRefund: ...

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund: ...

    async def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo: ...

    async def card_facts(self, payment_method_id: str) -> CardFacts: ...

    async def attach_payment_method(
        self, payment_method_id: str, *, customer: str, idempotency_key: str
    ) -> PaymentMethodInfo: ...

    async def detach_payment_method(
        self, payment_method_id: str, *, idempotency_key: str
    ) -> PaymentMethodInfo: ...

    async def list_payment_methods(self, customer: str) -> list[PaymentMethodInfo]: ...

    # Not `async def`: implementations are async generators, so the call itself
    # returns the iterator (`async for ev in provider.list_events(...)`), no await.
    def list_events(
        self, *, created_gte: datetime, types: Sequence[str] | None = None
    ) -> AsyncIterator[ProviderEvent]: ...

    def parse_webhook(self, payload: bytes, signature_header: str) -> ProviderEvent: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


def unix_time(value: Any) -> datetime | None:
    """A processor's Unix time; None when absent or beyond what a datetime holds (a hostile payload)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
