"""Stripe behind the PaymentProvider protocol: the only module in paymentd that imports `stripe`.

It makes the SDK calls (async, with the caller's idempotency keys), turns Stripe's JSON into the
neutral types of `providers.base` with plain-dict functions, maps SDK errors, and verifies webhooks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

import stripe

from paymentd.providers.base import (
    CardDetails,
    CardFacts,
    MandateAcceptance,
    PaymentError,
    PaymentMethodInfo,
    ProviderAuthError,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderIdempotencyError,
    ProviderInvalidRequest,
    ProviderFraudWarning,
    ProviderPayment,
    ProviderRefund,
    ProviderReview,
    ProviderStatus,
    ProviderUnavailable,
    RISK_LEVELS,
    RISK_OUTCOMES,
    RiskAssessment,
    WebhookSignatureError,
    unix_time,
)

__all__ = [
    "WEBHOOK_TOLERANCE_SECONDS",
    "StripeProvider",
    "map_stripe_error",
    "payment_method_label",
    "to_payment_error",
    "to_payment_method_info",
    "to_provider_event",
    "to_provider_payment",
    "to_provider_refund",
    "to_provider_review",
    "to_fraud_warning",
    "to_risk",
]

WEBHOOK_TOLERANCE_SECONDS = 300

# Every call that returns a PaymentIntent expands its latest charge, so receipts get the
# card brand/last4 from `latest_charge.payment_method_details`, and Radar's verdict comes
# from `latest_charge.outcome`, without a second call.
# (`payment_method_details` is part of the charge itself, so it needs no expand of its own;
# Stripe refuses to "expand" a field that is not expandable.)
_PI_EXPAND = ["latest_charge"]

_PAGE_SIZE = 100

_TYPE_LABELS = {
    "acss_debit": "ACSS Debit",
    "au_becs_debit": "BECS Direct Debit",
    "bacs_debit": "Bacs Direct Debit",
    "sepa_debit": "SEPA Direct Debit",
    "us_bank_account": "US bank account",
    "ideal": "iDEAL",
    "p24": "Przelewy24",
    "cashapp": "Cash App Pay",
    "wechat_pay": "WeChat Pay",
}

_CARD_BRANDS = {
    "amex": "American Express",
    "cartes_bancaires": "Cartes Bancaires",
    "diners": "Diners Club",
    "discover": "Discover",
    "eftpos_au": "eftpos",
    "jcb": "JCB",
    "mastercard": "Mastercard",
    "unionpay": "UnionPay",
    "visa": "Visa",
}


# --------------------------------------------------------------------------- JSON -> neutral


def _id_of(value: Any) -> str | None:
    """An expandable field is either an id or the expanded object; we want the id."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        found = value.get("id")
        return found if isinstance(found, str) else None
    return None


def _metadata(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (value or {}).items()}


def payment_method_label(type_: str, details: Mapping[str, Any] | None) -> str:
    """What a receipt prints: brand or bank scheme, and the last 4 digits, nothing more."""
    details = details or {}
    if type_ in ("card", "card_present"):
        brand = str(details.get("brand") or "card")
        name = _CARD_BRANDS.get(brand, brand.replace("_", " ").title())
    elif type_ == "us_bank_account" and details.get("bank_name"):
        name = str(details["bank_name"])
    else:
        name = _TYPE_LABELS.get(type_, type_.replace("_", " ").title())
    last4 = details.get("last4")
    return f"{name} ••••{last4}" if last4 else name


def _card(details: Mapping[str, Any] | None) -> CardDetails | None:
    if not details:
        return None
    return CardDetails(
        brand=str(details.get("brand") or "unknown"),
        last4=str(details.get("last4") or ""),
        exp_month=int(details.get("exp_month") or 0),
        exp_year=int(details.get("exp_year") or 0),
    )


def to_payment_method_info(data: Mapping[str, Any]) -> PaymentMethodInfo:
    """A Stripe `payment_method` object."""
    type_ = str(data.get("type") or "unknown")
    details = data.get(type_) if isinstance(data.get(type_), Mapping) else None
    return PaymentMethodInfo(
        id=str(data["id"]),
        type=type_,
        card=_card(data.get("card")) if type_ == "card" else None,
        customer=_id_of(data.get("customer")),
        created=unix_time(data.get("created")),
        label=payment_method_label(type_, details),
    )


def to_card_facts(data: Mapping[str, Any]) -> CardFacts:
    """A Stripe `payment_method` as fraud rules read it (card.iin only where the API version has it)."""
    type_ = str(data.get("type") or "unknown")
    card = data.get("card") if type_ == "card" and isinstance(data.get("card"), Mapping) else {}

    def text(key: str) -> str:
        value = card.get(key)
        return value if isinstance(value, str) else ""

    return CardFacts(type=type_, fingerprint=text("fingerprint"), country=text("country").upper(), bin=text("iin"),
                     brand=text("brand"), funding=text("funding"))


def _charge_payment_method_info(charge: Mapping[str, Any]) -> PaymentMethodInfo | None:
    """A Stripe `charge.payment_method_details` (the method as it was charged)."""
    pmd = charge.get("payment_method_details")
    if not isinstance(pmd, Mapping):
        return None
    type_ = str(pmd.get("type") or "unknown")
    details = pmd.get(type_) if isinstance(pmd.get(type_), Mapping) else None
    return PaymentMethodInfo(
        id=_id_of(charge.get("payment_method")) or "",
        type=type_,
        card=_card(details) if type_ == "card" else None,
        customer=_id_of(charge.get("customer")),
        created=None,
        label=payment_method_label(type_, details),
    )


def to_payment_error(data: Mapping[str, Any]) -> PaymentError:
    """A Stripe error object (`last_payment_error`, or the `error` of an error response)."""
    return PaymentError(
        code=data.get("code"),
        decline_code=data.get("decline_code"),
        message=str(data.get("message") or ""),
        payment_method=_id_of(data.get("payment_method")),
        type=data.get("type"),
    )


def _status(value: Any) -> ProviderStatus:
    try:
        return ProviderStatus(value)
    except ValueError:
        return ProviderStatus.unknown


def to_risk(charge: Mapping[str, Any]) -> RiskAssessment | None:
    """Radar's verdict from a charge's `outcome`; None when the charge has none (yet).
    Values Stripe may add later become `unknown` (level) or None (outcome: e.g. `invalid`,
    a request Stripe refused before Radar looked), never an error."""
    outcome = charge.get("outcome")
    if not isinstance(outcome, Mapping):
        return None
    level = outcome.get("risk_level")
    score = outcome.get("risk_score")
    kind = outcome.get("type")
    reason, rule = outcome.get("reason"), outcome.get("rule")
    return RiskAssessment(
        level=level if level in RISK_LEVELS else "unknown",
        score=score if isinstance(score, int) and not isinstance(score, bool) and 0 <= score <= 100 else None,
        outcome=kind if kind in RISK_OUTCOMES else None,
        reason=reason[:200] if isinstance(reason, str) else None,
        # `rule` is a Radar rule id, or (older API versions) the rule object
        rule=(_id_of(rule) or "")[:200] or None,
    )


def to_provider_payment(data: Mapping[str, Any]) -> ProviderPayment:
    """A Stripe `payment_intent` object; `latest_charge` and `payment_method` may be expanded."""
    latest_charge = data.get("latest_charge")
    payment_method = data.get("payment_method")
    details: PaymentMethodInfo | None = None
    if isinstance(latest_charge, Mapping):
        details = _charge_payment_method_info(latest_charge)
    if details is None and isinstance(payment_method, Mapping):
        details = to_payment_method_info(payment_method)
    last_error = data.get("last_payment_error")
    next_action = data.get("next_action")
    return ProviderPayment(
        id=str(data["id"]),
        status=_status(data.get("status")),
        amount=int(data["amount"]),
        currency=str(data["currency"]).lower(),
        amount_received=int(data.get("amount_received") or 0),
        amount_capturable=int(data.get("amount_capturable") or 0),
        client_secret=data.get("client_secret"),
        payment_method=_id_of(payment_method),
        payment_method_types=tuple(data.get("payment_method_types") or ()),
        capture_method=str(data.get("capture_method") or "automatic"),
        next_action=dict(next_action) if isinstance(next_action, Mapping) else None,
        last_error=to_payment_error(last_error) if isinstance(last_error, Mapping) else None,
        latest_charge=_id_of(latest_charge),
        payment_method_details=details,
        customer=_id_of(data.get("customer")),
        metadata=_metadata(data.get("metadata")),
        risk=to_risk(latest_charge) if isinstance(latest_charge, Mapping) else None,
        review=_id_of(data.get("review")),
    )


def to_provider_review(data: Mapping[str, Any]) -> ProviderReview:
    """A Stripe `review` object (Radar's manual review queue)."""
    return ProviderReview(
        id=str(data["id"]),
        payment_id=_id_of(data.get("payment_intent")),
        open=bool(data.get("open")),
        opened_reason=_text(data.get("opened_reason")),
        closed_reason=_text(data.get("closed_reason")),
        created=unix_time(data.get("created")),
    )


def to_fraud_warning(data: Mapping[str, Any]) -> ProviderFraudWarning:
    """A Stripe `radar.early_fraud_warning` object."""
    return ProviderFraudWarning(
        id=str(data["id"]),
        payment_id=_id_of(data.get("payment_intent")),
        charge=_id_of(data.get("charge")),
        fraud_type=_text(data.get("fraud_type")) or "misc",
        actionable=data.get("actionable") is True,
        created=unix_time(data.get("created")),
    )


def _text(value: Any, limit: int = 100) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def to_provider_refund(data: Mapping[str, Any]) -> ProviderRefund:
    """A Stripe `refund` object."""
    return ProviderRefund(
        id=str(data["id"]),
        # Refunds paymentd makes always name a payment intent; "" only for a
        # charge-only refund made outside paymentd (e.g. in the dashboard).
        payment_id=_id_of(data.get("payment_intent")) or "",
        amount=int(data["amount"]),
        currency=str(data["currency"]).lower(),
        # Stripe documents status as nullable; a refund without one has not settled.
        status=str(data.get("status") or "pending"),
        failure_reason=data.get("failure_reason"),
        reason=data.get("reason"),
    )


# Of the objects events carry that have no neutral type, the fields paymentd reads
# (disputes.service.report_from_object; a charge's id and PaymentIntent map a dispute
# to its payment). Everything else is dropped before the event leaves this module:
# billing details, emails, names, addresses, card fingerprints, dispute evidence.
_KEPT_FIELDS = {
    "dispute": ("id", "object", "amount", "currency", "charge", "payment_intent", "reason", "status", "created"),
    "charge": ("id", "object", "amount", "currency", "payment_intent", "status", "created"),
}


def minimized(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An event's object reduced to what paymentd reads of it (ids stay ids)."""
    object_type = str(obj.get("object") or "")
    kept: dict[str, Any] = {}
    for name in _KEPT_FIELDS.get(object_type, ("id", "object")):
        if name in obj:
            value = obj[name]
            kept[name] = _id_of(value) if isinstance(value, Mapping) else value
    due_by = (obj.get("evidence_details") or {}).get("due_by") if object_type == "dispute" else None
    if due_by is not None:
        kept["evidence_details"] = {"due_by": due_by}
    return kept


def to_provider_event(data: Mapping[str, Any]) -> ProviderEvent:
    """A Stripe `event` object; its data.object becomes neutral where we know the type,
    and is otherwise minimized to the fields paymentd reads."""
    obj = (data.get("data") or {}).get("object") or {}
    object_type = str(obj.get("object") or "")
    neutral: ProviderPayment | ProviderRefund | ProviderReview | ProviderFraudWarning | dict[str, Any]
    if object_type == "payment_intent":
        neutral = to_provider_payment(obj)
        payment_intent_id: str | None = neutral.id
    elif object_type in ("review", "radar.early_fraud_warning"):
        neutral = to_provider_review(obj) if object_type == "review" else to_fraud_warning(obj)
        payment_intent_id = neutral.payment_id
    else:
        neutral = to_provider_refund(obj) if object_type == "refund" else minimized(obj)
        # charge.*, refund.*, charge.dispute.*: all carry the payment intent they concern.
        payment_intent_id = _id_of(obj.get("payment_intent"))
    return ProviderEvent(
        id=str(data["id"]),
        type=str(data["type"]),
        created=unix_time(data.get("created")) or datetime.fromtimestamp(0, tz=UTC),
        object_type=object_type,
        object=neutral,
        livemode=bool(data.get("livemode", False)),
        payment_intent_id=payment_intent_id,
        account=_id_of(data.get("account")),
    )


# --------------------------------------------------------------------------- errors


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    # Stripe's headers come back case-insensitive from aiohttp, but not in every code path.
    raw = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _declined_payment(data: Any) -> ProviderPayment | None:
    # A malformed embedded intent must not hide the decline itself; the service
    # can always retrieve the payment instead.
    if not isinstance(data, Mapping):
        return None
    try:
        return to_provider_payment(data)
    except (KeyError, TypeError, ValueError):
        return None


def map_stripe_error(exc: stripe.StripeError) -> ProviderError:
    """The one place an SDK exception becomes a ProviderError. The SDK has already retried
    what is retryable (connection errors, 409, 5xx) with the same idempotency key."""
    body = exc.json_body.get("error") if isinstance(exc.json_body, Mapping) else None
    err: Mapping[str, Any] = body if isinstance(body, Mapping) else {}
    message = str(err.get("message") or exc.user_message or type(exc).__name__)
    code = err.get("code") or exc.code
    common: dict[str, Any] = {
        "code": code,
        "request_id": exc.request_id,
        "http_status": exc.http_status,
    }

    if isinstance(exc, stripe.SignatureVerificationError):
        return WebhookSignatureError(message, code="signature_mismatch")
    if isinstance(exc, stripe.CardError):
        return ProviderDeclined(
            message,
            decline_code=err.get("decline_code"),
            payment=_declined_payment(err.get("payment_intent")),
            charge=_id_of(err.get("charge")),
            **common,
        )
    if isinstance(exc, stripe.APIConnectionError):
        timed_out = isinstance(exc.__cause__, TimeoutError)  # aiohttp's timeouts are TimeoutErrors
        return ProviderUnavailable(message, kind="timeout" if timed_out else "connection", **common)
    # Someone else holds the object's lock, or the same key is still in flight at Stripe
    # (409): the request did nothing yet, so repeating it with the same key is safe.
    if code == "lock_timeout" or exc.http_status == 409:
        return ProviderUnavailable(
            message, kind="conflict", retry_after=_retry_after(exc.headers), **common
        )
    if isinstance(exc, stripe.RateLimitError):
        return ProviderUnavailable(
            message, kind="rate_limited", retry_after=_retry_after(exc.headers), **common
        )
    if isinstance(exc, stripe.IdempotencyError) or err.get("type") == "idempotency_error":
        return ProviderIdempotencyError(message, **common)
    if isinstance(exc, stripe.InvalidRequestError):
        return ProviderInvalidRequest(message, param=err.get("param") or exc.param, **common)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderAuthError(message, **common)
    if isinstance(exc, stripe.APIError) and (exc.http_status is None or exc.http_status >= 500):
        return ProviderUnavailable(
            message, kind="server", retry_after=_retry_after(exc.headers), **common
        )
    return ProviderError(message, **common)


def _raise_mapped(exc: stripe.StripeError) -> NoReturn:
    raise map_stripe_error(exc) from exc


def _options(idempotency_key: str) -> dict[str, Any]:
    # The SDK invents a random key for any POST without one, which would make a retry
    # after a crash a second charge. Refuse instead: keys come from paymentd's own ids.
    if not idempotency_key or not idempotency_key.strip():
        raise ValueError("an idempotency_key is required for every mutating Stripe call")
    return {"idempotency_key": idempotency_key}


def _verifies(payload: str, header: str, secret: str, tolerance: int | None) -> bool:
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
    except stripe.SignatureVerificationError:
        return False
    return True


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _mandate_data(mandate: MandateAcceptance | None) -> dict[str, Any] | None:
    if mandate is None:
        return None
    online = {"ip_address": mandate.ip_address, "user_agent": mandate.user_agent}
    return {"customer_acceptance": {"type": "online", "online": online}}


# --------------------------------------------------------------------------- provider


def _path(template: str, *ids: str) -> str:
    return template.format(*(quote(i, safe="") for i in ids))


RequestHook = Callable[[str, str], Awaitable[None]]


class _HookedHTTPClient(stripe.AIOHTTPClient):
    """The SDK's aiohttp client, with three additions at the one place every request passes:

    - `hook(method, url)` before each request sent (the SDK's retries and list pages
      included), so the outbound rate limiter counts each one;
    - Stripe's 429s are retried with exponential backoff and jitter, same request and
      same Idempotency-Key. The SDK retries a 429 only when Stripe adds
      `Stripe-Should-Retry: true`; a plain rate-limit answer is just as safe to repeat;
    - a failure while reading the body (a connection dropped or timed out mid-answer) is
      a connection error the SDK retries, as one before the headers already is.

    aiohttp rather than the SDK's httpx client: httpx cost a quarter of paymentd's CPU per
    payment (its client, httpcore, h11 and anyio layers); aiohttp does the same work in a fifth.
    """

    RATE_LIMIT_RETRIES = 3
    RATE_LIMIT_BASE_S = 0.5

    def __init__(self, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.hook: RequestHook | None = None

    async def request_async(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        for attempt in range(self.RATE_LIMIT_RETRIES + 1):
            stream, status, response_headers = await self.request_stream_async(method, url, headers, post_data)
            try:
                content = await stream.read()
            except Exception as error:  # noqa: BLE001 - whatever the transport raised, as the SDK maps it
                self._handle_request_error(error)
            if status != 429 or attempt == self.RATE_LIMIT_RETRIES or _retry_advice(response_headers):
                return content, status, response_headers
            await asyncio.sleep(self.RATE_LIMIT_BASE_S * 2**attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def request_stream_async(self, method, url, headers, post_data=None):  # type: ignore[no-untyped-def]
        if self.hook is not None:
            await self.hook(method, url)
        return await super().request_stream_async(method, url, headers, post_data)


def _retry_advice(headers) -> bool:  # type: ignore[no-untyped-def]
    """Stripe said whether to retry: the SDK follows that advice itself."""
    return "stripe-should-retry" in (headers or {})


class StripeProvider:
    """PaymentProvider over the official SDK's async client (aiohttp underneath)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        webhook_secrets: Sequence[str] = (),
        max_network_retries: int = 2,
        timeout: float = 10.0,
    ) -> None:
        # api_base points the SDK at stripe_sim; without it the SDK's own default
        # (api.stripe.com) is used, so real sk_test_/sk_live_ keys work unchanged.
        self.sandbox = api_base is not None
        # Live keys (secret or restricted) move real money; their events say livemode.
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self._webhook_secrets = tuple(s for s in webhook_secrets if s)
        self._http_client = _HookedHTTPClient(timeout=timeout)
        # No stripe_version: the SDK sends the API version it was generated for, and the
        # SDK itself is pinned exactly, so response shapes only change when we upgrade it.
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            http_client=self._http_client,
            # The SDK retries connection errors, 409 and 5xx with backoff and the same
            # idempotency key; we do not retry on top of it.
            max_network_retries=max_network_retries,
        )

    async def _call(
        self, method: str, path: str, params: Mapping[str, Any] | None = None, *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """One call through the SDK (its retries, headers and error classes), answered as
        Stripe's JSON: the SDK's raw path skips building StripeObjects we would only flatten
        again (about 7% of paymentd's profiled CPU per payment). Stripe's errors become the
        provider's."""
        options = _options(idempotency_key) if method == "post" else {}
        try:
            response = await self._client.raw_request_async(method, path, **(params or {}), **options)
        except stripe.StripeError as exc:
            _raise_mapped(exc)
        return response.data

    def set_request_hook(self, hook: RequestHook | None) -> None:
        """Install the outbound rate limiter (see providers/guard.py)."""
        self._http_client.hook = hook

    # -- customers

    async def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> str:
        params = _drop_none({"email": email, "name": name, "metadata": dict(metadata)})
        customer = await self._call("post", "/v1/customers", params, idempotency_key=idempotency_key)
        return str(customer["id"])

    # -- payments

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
    ) -> ProviderPayment:
        params = _drop_none(
            {
                "amount": amount,
                "currency": currency.lower(),
                "payment_method_types": list(payment_method_types),
                "capture_method": capture_method,
                "payment_method": payment_method,
                "customer": customer,
                "description": description,
                "receipt_email": receipt_email,
                "metadata": dict(metadata),
                "expand": _PI_EXPAND,
            }
        )
        return to_provider_payment(
            await self._call("post", "/v1/payment_intents", params, idempotency_key=idempotency_key)
        )

    async def confirm_payment(
        self,
        payment_id: str,
        *,
        payment_method: str | None,
        return_url: str | None,
        idempotency_key: str,
        mandate: MandateAcceptance | None = None,
        capture_method: str | None = None,
    ) -> ProviderPayment:
        """Raises ProviderDeclined, carrying the payment after the decline, on a decline."""
        params = _drop_none(
            {"payment_method": payment_method, "return_url": return_url, "expand": _PI_EXPAND,
             "mandate_data": _mandate_data(mandate), "capture_method": capture_method}
        )
        path = _path("/v1/payment_intents/{}/confirm", payment_id)
        try:
            return to_provider_payment(await self._call("post", path, params, idempotency_key=idempotency_key))
        except ProviderDeclined as declined:
            await self._with_declined_risk(declined)
            raise

    async def _with_declined_risk(self, declined: ProviderDeclined) -> None:
        """A decline's embedded PaymentIntent never has its charge expanded, so Radar's
        verdict (a block, an issuer decline's score) is read from the failed charge: one
        more call, on declines only, and skipped when it fails (the decline stands)."""
        charge_id = declined.charge or (declined.payment.latest_charge if declined.payment else None)
        if declined.payment is None or charge_id is None:
            return
        try:
            charge = await self._call("get", _path("/v1/charges/{}", charge_id))
        except ProviderError:
            return
        if _id_of(charge.get("payment_intent")) == declined.payment.id:
            declined.payment = dataclasses.replace(declined.payment, risk=to_risk(charge))

    async def capture_payment(
        self, payment_id: str, *, amount: int | None, idempotency_key: str
    ) -> ProviderPayment:
        params = _drop_none({"amount_to_capture": amount, "expand": _PI_EXPAND})
        path = _path("/v1/payment_intents/{}/capture", payment_id)
        return to_provider_payment(await self._call("post", path, params, idempotency_key=idempotency_key))

    async def cancel_payment(
        self, payment_id: str, *, reason: str | None, idempotency_key: str
    ) -> ProviderPayment:
        params = _drop_none({"cancellation_reason": reason, "expand": _PI_EXPAND})
        path = _path("/v1/payment_intents/{}/cancel", payment_id)
        return to_provider_payment(await self._call("post", path, params, idempotency_key=idempotency_key))

    async def retrieve_payment(self, payment_id: str) -> ProviderPayment:
        path = _path("/v1/payment_intents/{}", payment_id)
        return to_provider_payment(await self._call("get", path, {"expand": _PI_EXPAND}))

    # -- Radar

    async def approve_review(self, review_id: str, *, idempotency_key: str) -> ProviderReview:
        """Approve Radar's review (an already closed one is ProviderInvalidRequest)."""
        path = _path("/v1/reviews/{}/approve", review_id)
        return to_provider_review(await self._call("post", path, idempotency_key=idempotency_key))

    async def retrieve_review(self, review_id: str) -> ProviderReview:
        return to_provider_review(await self._call("get", _path("/v1/reviews/{}", review_id)))

    # -- refunds

    async def create_refund(
        self,
        *,
        payment_id: str,
        amount: int | None,
        reason: str | None,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> ProviderRefund:
        params = _drop_none(
            {
                "payment_intent": payment_id,
                "amount": amount,
                "reason": reason,
                "metadata": dict(metadata),
            }
        )
        return to_provider_refund(await self._call("post", "/v1/refunds", params, idempotency_key=idempotency_key))

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return to_provider_refund(await self._call("get", _path("/v1/refunds/{}", refund_id)))

    # -- payment methods

    async def retrieve_payment_method(self, payment_method_id: str) -> PaymentMethodInfo:
        return to_payment_method_info(await self._call("get", _path("/v1/payment_methods/{}", payment_method_id)))

    async def card_facts(self, payment_method_id: str) -> CardFacts:
        return to_card_facts(await self._call("get", _path("/v1/payment_methods/{}", payment_method_id)))

    async def attach_payment_method(
        self, payment_method_id: str, *, customer: str, idempotency_key: str
    ) -> PaymentMethodInfo:
        path = _path("/v1/payment_methods/{}/attach", payment_method_id)
        return to_payment_method_info(
            await self._call("post", path, {"customer": customer}, idempotency_key=idempotency_key)
        )

    async def detach_payment_method(
        self, payment_method_id: str, *, idempotency_key: str
    ) -> PaymentMethodInfo:
        path = _path("/v1/payment_methods/{}/detach", payment_method_id)
        return to_payment_method_info(await self._call("post", path, idempotency_key=idempotency_key))

    async def list_payment_methods(self, customer: str) -> list[PaymentMethodInfo]:
        path = _path("/v1/customers/{}/payment_methods", customer)
        return [to_payment_method_info(pm) async for pm in self._pages(path, {})]

    # -- events

    async def list_events(
        self, *, created_gte: datetime, types: Sequence[str] | None = None
    ) -> AsyncIterator[ProviderEvent]:
        """Every event created at or after `created_gte`, newest first (Stripe's order),
        following `has_more` page by page. Stripe keeps events for 30 days and accepts
        at most 20 `types`."""
        params: dict[str, Any] = {"created": {"gte": int(created_gte.timestamp())}}
        if types:
            params["types"] = list(types)
        async for event in self._pages("/v1/events", params):
            yield to_provider_event(event)

    async def _pages(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Every item of a list, page by page while Stripe says `has_more`."""
        params = {**params, "limit": _PAGE_SIZE}
        while True:
            page = await self._call("get", path, params)
            items = page.get("data") or []
            for item in items:
                yield item
            if not page.get("has_more") or not items:
                return
            params = {**params, "starting_after": items[-1]["id"]}

    # -- webhooks

    def parse_webhook(self, payload: bytes, signature_header: str) -> ProviderEvent:
        """Verify `Stripe-Signature` against each configured secret in turn (so a rotated
        secret keeps working while both are configured), then parse the event."""
        if not self._webhook_secrets:
            raise WebhookSignatureError("no webhook secret is configured", code="no_secret")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookSignatureError(
                "webhook body is not UTF-8", code="malformed_payload"
            ) from None

        secrets = self._webhook_secrets
        tolerance = WEBHOOK_TOLERANCE_SECONDS
        if not any(_verifies(text, signature_header, s, tolerance) for s in secrets):
            # Tell a replayed or delayed delivery apart from a forged one in the logs:
            # the signature is right but the timestamp is older than the tolerance.
            if any(_verifies(text, signature_header, s, None) for s in secrets):
                raise WebhookSignatureError(
                    f"webhook timestamp is older than {WEBHOOK_TOLERANCE_SECONDS} s",
                    code="timestamp_outside_tolerance",
                )
            raise WebhookSignatureError(
                "webhook signature does not match any configured secret",
                code="signature_mismatch",
            )

        try:
            data = json.loads(text)
            return to_provider_event(data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookSignatureError(
                "webhook body is not a Stripe event", code="malformed_payload"
            ) from exc

    # -- lifecycle

    async def ping(self) -> None:
        """One cheap authenticated read, without the SDK's retries so /readyz answers fast.
        Raises ProviderUnavailable when Stripe cannot be reached, ProviderAuthError when the
        key is refused."""
        try:
            await self._client.raw_request_async("get", "/v1/customers", limit=1, max_network_retries=0)
        except stripe.StripeError as exc:
            _raise_mapped(exc)

    async def aclose(self) -> None:
        await self._http_client.close_async()
