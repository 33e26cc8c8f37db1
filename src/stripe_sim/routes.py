"""The Stripe operations the simulator serves, and how a request path finds one.

Operation names are the spec's own ("POST /v1/payment_intents/{intent}"),
so the same key selects the handler, the parameter schema and the
per-operation knobs. Static paths are a dict hit; templated ones are matched
by segment among the few routes of the same method and length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .resources import (
    attempts,
    charges,
    customers,
    disputes,
    early_fraud_warnings,
    events,
    payment_intents,
    payment_methods,
    refunds,
    reviews,
    webhook_endpoints,
)

Handler = Callable[..., dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    "GET /v1/payment_intents": payment_intents.list_,
    "POST /v1/payment_intents": payment_intents.create,
    "GET /v1/payment_intents/{intent}": payment_intents.retrieve,
    "POST /v1/payment_intents/{intent}": payment_intents.update,
    "POST /v1/payment_intents/{intent}/confirm": attempts.confirm,
    "POST /v1/payment_intents/{intent}/capture": payment_intents.capture,
    "POST /v1/payment_intents/{intent}/cancel": payment_intents.cancel,
    "GET /v1/charges": charges.list_,
    "GET /v1/charges/{charge}": charges.retrieve,
    "GET /v1/payment_methods": payment_methods.list_,
    "POST /v1/payment_methods": payment_methods.create,
    "GET /v1/payment_methods/{payment_method}": payment_methods.retrieve,
    "POST /v1/payment_methods/{payment_method}": payment_methods.update,
    "POST /v1/payment_methods/{payment_method}/attach": payment_methods.attach,
    "POST /v1/payment_methods/{payment_method}/detach": payment_methods.detach,
    "GET /v1/customers": customers.list_,
    "POST /v1/customers": customers.create,
    "GET /v1/customers/{customer}": customers.retrieve,
    "POST /v1/customers/{customer}": customers.update,
    "DELETE /v1/customers/{customer}": customers.delete,
    "GET /v1/customers/{customer}/payment_methods": payment_methods.list_for_customer,
    "GET /v1/customers/{customer}/payment_methods/{payment_method}": payment_methods.retrieve_for_customer,
    "GET /v1/refunds": refunds.list_,
    "POST /v1/refunds": refunds.create,
    "GET /v1/refunds/{refund}": refunds.retrieve,
    "POST /v1/refunds/{refund}": refunds.update,
    "GET /v1/events": events.list_,
    "GET /v1/events/{id}": events.retrieve,
    "GET /v1/disputes": disputes.list_,
    "GET /v1/disputes/{dispute}": disputes.retrieve,
    "POST /v1/disputes/{dispute}/close": disputes.close,
    "GET /v1/reviews": reviews.list_,
    "GET /v1/reviews/{review}": reviews.retrieve,
    "POST /v1/reviews/{review}/approve": reviews.approve,
    "GET /v1/radar/early_fraud_warnings": early_fraud_warnings.list_,
    "GET /v1/radar/early_fraud_warnings/{early_fraud_warning}": early_fraud_warnings.retrieve,
    "GET /v1/webhook_endpoints": webhook_endpoints.list_,
    "POST /v1/webhook_endpoints": webhook_endpoints.create,
    "GET /v1/webhook_endpoints/{webhook_endpoint}": webhook_endpoints.retrieve,
    "POST /v1/webhook_endpoints/{webhook_endpoint}": webhook_endpoints.update,
    "DELETE /v1/webhook_endpoints/{webhook_endpoint}": webhook_endpoints.delete,
}

_STATIC: dict[tuple[str, str], str] = {}
_TEMPLATED: dict[tuple[str, int], list[tuple[tuple[str | None, ...], str]]] = {}
for _operation in HANDLERS:
    _method, _path = _operation.split(" ", 1)
    if "{" not in _path:
        _STATIC[(_method, _path)] = _operation
        continue
    _segments = tuple(None if s.startswith("{") else s for s in _path.strip("/").split("/"))
    _TEMPLATED.setdefault((_method, len(_segments)), []).append((_segments, _operation))


def match(method: str, path: str) -> tuple[str, list[str]] | None:
    """(operation, path arguments) for a request, or None for a URL Stripe does not have."""
    operation = _STATIC.get((method, path.rstrip("/") or "/"))
    if operation is not None:
        return operation, []
    segments = path.strip("/").split("/")
    for template, operation in _TEMPLATED.get((method, len(segments)), ()):
        args = []
        for want, got in zip(template, segments):
            if want is None:
                if not got:
                    break
                args.append(got)
            elif want != got:
                break
        else:
            return operation, args
    return None
