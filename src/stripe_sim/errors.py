"""Stripe-shaped error responses.

Every failure the simulator reports travels as a `StripeError` so the HTTP
layer can render Stripe's exact `{"error": {...}}` body, status and headers.
"""

from __future__ import annotations

from typing import Any


class StripeError(Exception):
    """An API error with Stripe's HTTP status, error body and extra headers."""

    def __init__(self, status: int, error: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error}


def _doc_url(code: str | None) -> dict[str, str]:
    # Stripe links every coded error to its documentation page.
    return {"doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"} if code else {}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None,
                    status: int = 400, **extra: Any) -> StripeError:
    error: dict[str, Any] = {"message": message, "type": "invalid_request_error"}
    if code:
        error["code"] = code
        error.update(_doc_url(code))
    if param:
        error["param"] = param
    error.update(extra)
    return StripeError(status, error)


def resource_missing(kind: str, object_id: str, param: str) -> StripeError:
    return invalid_request(f"No such {kind}: '{object_id}'", param=param,
                           code="resource_missing", status=404)


def unexpected_state(message: str, **extra: Any) -> StripeError:
    return invalid_request(message, code="payment_intent_unexpected_state", **extra)


def card_error(message: str, *, code: str, decline_code: str | None = None,
               param: str | None = None, **extra: Any) -> StripeError:
    error: dict[str, Any] = {"message": message, "type": "card_error", "code": code, **_doc_url(code)}
    if decline_code:
        error["decline_code"] = decline_code
    if param:
        error["param"] = param
    error.update(extra)
    return StripeError(402, error)


def api_error(status: int = 500) -> StripeError:
    return StripeError(status, {"message": "An unknown error occurred", "type": "api_error"})


def rate_limited() -> StripeError:
    return invalid_request(
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        code="rate_limit", status=429)


def lock_timeout() -> StripeError:
    # Stripe asks clients to retry lock timeouts; the SDK honours this header.
    err = invalid_request(
        "This object cannot be accessed right now because another API request or Stripe process "
        "is currently accessing it. If you see this error intermittently, retry the request. "
        "If you see this error frequently and are making multiple concurrent requests to a single "
        "object, make your requests serially or at a lower rate.",
        code="lock_timeout", status=429)
    err.headers["Stripe-Should-Retry"] = "true"
    return err


def missing_api_key() -> StripeError:
    err = invalid_request(
        "You did not provide an API key. You need to provide your API key in the Authorization header, "
        "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication "
        "for details, or we can help at https://support.stripe.com/.", status=401)
    err.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
    return err


def invalid_api_key(key: str) -> StripeError:
    # Stripe masks all but the key's prefix and its last four characters.
    prefix = key[:8] if key.startswith(("sk_", "rk_", "pk_")) else ""
    tail = key[-4:] if len(key) > len(prefix) + 8 else ""
    masked = prefix + "*" * (len(key) - len(prefix) - len(tail)) + tail
    err = invalid_request(f"Invalid API Key provided: {masked}", status=401)
    err.headers["WWW-Authenticate"] = 'Basic realm="Stripe"'
    return err


def unrecognized_url(method: str, path: str) -> StripeError:
    return invalid_request(
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can "
        "help at https://support.stripe.com/.", status=404)
