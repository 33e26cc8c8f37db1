"""The inbox stores events in paymentd's neutral vocabulary (providers/base.py), not
Stripe's JSON: the job that applies them, and events listed by the reconciler, then
never need Stripe's names. Only what the apply path reads is kept (data minimization):
no client secret, customer, metadata beyond paymentd's own id, nor anything personal."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from paymentd.providers.base import (
    CardDetails,
    PaymentError,
    PaymentMethodInfo,
    ProviderEvent,
    ProviderFraudWarning,
    ProviderPayment,
    ProviderRefund,
    ProviderReview,
    ProviderStatus,
    RiskAssessment,
)

# The metadata key paymentd puts on every PaymentIntent it creates (payments.service).
OUR_ID_KEY = "paymentd_payment_id"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _method(info: PaymentMethodInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    card = info.card
    return {
        "id": info.id,
        "type": info.type,
        "card": {"brand": card.brand, "last4": card.last4, "exp_month": card.exp_month, "exp_year": card.exp_year}
        if card
        else None,
        "label": info.label,
    }


def _parse_method(data: dict[str, Any] | None) -> PaymentMethodInfo | None:
    if data is None:
        return None
    card = data.get("card")
    return PaymentMethodInfo(
        id=data["id"],
        type=data["type"],
        card=CardDetails(**card) if card else None,
        customer=None,
        label=data.get("label"),
    )


def payment_to_json(payment: ProviderPayment) -> dict[str, Any]:
    error = payment.last_error
    return {
        "id": payment.id,
        "status": payment.status.value,
        "amount": payment.amount,
        "currency": payment.currency,
        "amount_received": payment.amount_received,
        "amount_capturable": payment.amount_capturable,
        "payment_method": payment.payment_method,
        "payment_method_types": list(payment.payment_method_types),
        "capture_method": payment.capture_method,
        "next_action": payment.next_action,
        "last_error": {
            "code": error.code,
            "decline_code": error.decline_code,
            "message": error.message,
            "payment_method": error.payment_method,
            "type": error.type,
        }
        if error
        else None,
        "latest_charge": payment.latest_charge,
        "payment_method_details": _method(payment.payment_method_details),
        # The merchant's metadata may hold anything; only paymentd's own id is read (consistency).
        "metadata": {k: v for k, v in payment.metadata.items() if k == OUR_ID_KEY},
        "risk": asdict(payment.risk) if payment.risk else None,
        "review": payment.review,
    }


def payment_from_json(data: dict[str, Any]) -> ProviderPayment:
    error = data.get("last_error")
    try:
        status = ProviderStatus(data["status"])
    except ValueError:
        status = ProviderStatus.unknown
    return ProviderPayment(
        id=data["id"],
        status=status,
        amount=data["amount"],
        currency=data["currency"],
        amount_received=data.get("amount_received", 0),
        amount_capturable=data.get("amount_capturable", 0),
        client_secret=None,
        payment_method=data.get("payment_method"),
        payment_method_types=tuple(data.get("payment_method_types") or ()),
        capture_method=data.get("capture_method", "automatic"),
        next_action=data.get("next_action"),
        last_error=PaymentError(**error) if error else None,
        latest_charge=data.get("latest_charge"),
        payment_method_details=_parse_method(data.get("payment_method_details")),
        customer=None,
        metadata=data.get("metadata") or {},
        risk=RiskAssessment(**data["risk"]) if data.get("risk") else None,
        review=data.get("review"),
    )


def event_to_json(event: ProviderEvent) -> dict[str, Any]:
    obj = event.object
    if isinstance(obj, ProviderPayment):
        kind, body = "payment", payment_to_json(obj)
    elif isinstance(obj, ProviderRefund):
        kind, body = "refund", {
            "id": obj.id,
            "payment_id": obj.payment_id,
            "amount": obj.amount,
            "currency": obj.currency,
            "status": obj.status,
            "failure_reason": obj.failure_reason,
            "reason": obj.reason,
        }
    elif isinstance(obj, ProviderReview | ProviderFraudWarning):
        kind = "review" if isinstance(obj, ProviderReview) else "fraud_warning"
        body = {**asdict(obj), "created": _time(obj.created)}
    else:
        kind, body = "raw", dict(obj)
    return {
        "id": event.id,
        "type": event.type,
        "created": _time(event.created),
        "object_type": event.object_type,
        "object_kind": kind,
        "object": body,
        "livemode": event.livemode,
        "payment_intent_id": event.payment_intent_id,
        "account": event.account,
    }


def event_from_json(data: dict[str, Any]) -> ProviderEvent:
    kind, body = data["object_kind"], data["object"]
    obj: ProviderPayment | ProviderRefund | ProviderReview | ProviderFraudWarning | dict[str, Any]
    if kind == "payment":
        obj = payment_from_json(body)
    elif kind == "refund":
        obj = ProviderRefund(**body)
    elif kind in ("review", "fraud_warning"):
        cls = ProviderReview if kind == "review" else ProviderFraudWarning
        obj = cls(**{**body, "created": _parse_time(body.get("created"))})
    else:
        obj = body
    created = _parse_time(data["created"])
    assert created is not None
    return ProviderEvent(
        id=data["id"],
        type=data["type"],
        created=created,
        object_type=data["object_type"],
        object=obj,
        livemode=data["livemode"],
        payment_intent_id=data.get("payment_intent_id"),
        account=data.get("account"),
    )
