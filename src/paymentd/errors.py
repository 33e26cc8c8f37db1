"""The error tree of paymentd and its mapping to API.md's error envelope.

Every failure a client can see is one of these classes; the HTTP layer turns any
of them into a status, headers and body in exactly one way (``envelope()``).

    PaymentdError(Exception)        500 api_error             code internal_error
    ├── InvalidRequest              400 invalid_request_error  code invalid_request  (other HTTP 4xx: 405, 413...)
    │   ├── NotFound                404                        code resource_missing
    │   ├── Conflict                409                        code invalid_state (or e.g. amount_exceeds_refundable)
    │   └── Unprocessable           422                        code unprocessable_entity
    ├── AuthenticationFailed        401 authentication_error   code invalid_api_key
    ├── PermissionDenied            403 permission_error       code missing_scope
    ├── CardDeclined                402 card_error             code card_declined   + decline_code, payment_id
    ├── FraudBlocked                402 fraud_error            code fraud_blocked   + payment_id
    ├── IdempotencyError            422 | 409 idempotency_error  code idempotency_key_reused | idempotency_key_in_use
    ├── RateLimited                 429 rate_limit_error       code rate_limited    + Retry-After header
    ├── ProviderUnavailable         502 | 503 | 504 provider_error
                                    code provider_error | provider_unavailable | provider_timeout
                                    (+ Retry-After header on 503)
    └── TemporarilyUnavailable      503 api_error              code service_unavailable + Retry-After
                                    (our own database unreachable or saturated: retry, nothing was done)

Messages, codes, params and extra fields end up in HTTP responses and in logs.
Callers must never put secrets (API keys, client secrets, webhook secrets) or card
data in them: say *which* field is wrong, never echo *what* it contained.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

__all__ = [
    "PaymentdError",
    "InvalidRequest",
    "NotFound",
    "Conflict",
    "Unprocessable",
    "AuthenticationFailed",
    "PermissionDenied",
    "CardDeclined",
    "FraudBlocked",
    "IdempotencyError",
    "RateLimited",
    "ProviderUnavailable",
    "TemporarilyUnavailable",
]

# Keys of the envelope that every error has; ``extra`` may add fields but never
# replace these, or a caller could forge e.g. the request id.
_RESERVED_KEYS = frozenset({"type", "code", "message", "param", "request_id"})


class PaymentdError(Exception):
    """Base of every error a client can see; on its own it means "a bug" (500).

    Subclasses set the class attributes; instances may pick another ``status``
    only among ``allowed_statuses`` (API.md fixes which statuses a type may use).
    """

    default_status: ClassVar[int] = 500
    allowed_statuses: ClassVar[frozenset[int]] = frozenset({500})
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str] = "internal_error"

    status: int
    code: str
    param: str | None
    message: str
    extra: dict[str, Any]
    retry_after: int | None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        if not isinstance(message, str) or not message:
            raise TypeError("an error needs a non-empty message")
        status = self.default_status if status is None else status
        if status not in self.allowed_statuses:
            raise ValueError(
                f"{type(self).__name__} cannot answer {status}; "
                f"allowed: {sorted(self.allowed_statuses)}"
            )
        clash = _RESERVED_KEYS.intersection(extra)
        if clash:
            raise ValueError(f"extra fields may not replace envelope keys: {sorted(clash)}")
        self.status = status
        self.code = code if code is not None else self._code_for(status)
        self.param = param
        self.message = message
        self.extra = dict(extra)
        self.retry_after = _seconds(retry_after) if retry_after is not None else None

    def _code_for(self, status: int) -> str:
        # Classes whose statuses mean different things pick a code per status.
        return self.default_code

    def headers(self) -> dict[str, str]:
        """HTTP headers this error adds to the response (Retry-After, where set)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(self.retry_after)}

    def envelope(self, request_id: str) -> dict[str, Any]:
        """The response body, exactly as API.md shows it (``param`` stays, even null)."""
        body: dict[str, Any] = {
            "type": self.type,
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "request_id": request_id,
        }
        body.update(self.extra)
        return {"error": body}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"param={self.param!r}, message={self.message!r})"
        )


def _seconds(value: float) -> int:
    # Retry-After takes whole seconds; round up so a client never retries early.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("retry_after must be a finite number of seconds")
    if value < 0:
        raise ValueError("retry_after cannot be negative")
    return math.ceil(value)


class InvalidRequest(PaymentdError):
    """The request cannot be served as sent: bad JSON, bad values (400).

    API.md gives this type 400/404/409/422. The HTTP layer may also use it for
    refusals the table does not list but HTTP names exactly (405 method, 413 body
    too large, 415 media type...), so any 4xx is accepted except those that
    belong to another type (401, 402, 403, 429).
    """

    default_status = 400
    allowed_statuses = frozenset(range(400, 500)) - {401, 402, 403, 429}
    type = "invalid_request_error"
    default_code = "invalid_request"


class NotFound(InvalidRequest):
    """No such object for this account (another account's object looks the same)."""

    default_status = 404
    allowed_statuses = frozenset({404})
    default_code = "resource_missing"


class Conflict(InvalidRequest):
    """The object's state forbids this now (invalid_state, amount_exceeds_refundable...)."""

    default_status = 409
    allowed_statuses = frozenset({409})
    default_code = "invalid_state"


class Unprocessable(InvalidRequest):
    """Well-formed, but the values cannot be acted on (422)."""

    default_status = 422
    allowed_statuses = frozenset({422})
    default_code = "unprocessable_entity"


class MethodNotAllowed(InvalidRequest):
    """The path exists, not for this method (405); `Allow` names the methods it takes."""

    default_status = 405
    allowed_statuses = frozenset({405})
    default_code = "method_not_allowed"

    def __init__(self, method: str, allowed: list[str]) -> None:
        self.allowed = sorted(set(allowed))
        super().__init__(f"{method} is not allowed here; this path takes {', '.join(self.allowed)}.")

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed), **super().headers()}


class AuthenticationFailed(PaymentdError):
    """Missing, malformed, unknown or revoked API key."""

    default_status = 401
    allowed_statuses = frozenset({401})
    type = "authentication_error"
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        # RFC 6750: a 401 for a bearer-protected resource names the scheme.
        return {"WWW-Authenticate": "Bearer", **super().headers()}


class PermissionDenied(PaymentdError):
    """The key is valid but lacks the scope this endpoint needs."""

    default_status = 403
    allowed_statuses = frozenset({403})
    type = "permission_error"
    default_code = "missing_scope"


class CardDeclined(PaymentdError):
    """The processor declined the payment method; the body names the payment."""

    default_status = 402
    allowed_statuses = frozenset({402})
    type = "card_error"
    default_code = "card_declined"

    def __init__(
        self,
        message: str,
        *,
        decline_code: str | None,
        payment_id: str,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        # API.md promises both fields in the body, so they are required here.
        super().__init__(
            message, code=code, param=param, decline_code=decline_code, payment_id=payment_id, **extra
        )


class FraudBlocked(PaymentdError):
    """paymentd's own fraud rules refused the payment before it reached Stripe."""

    default_status = 402
    allowed_statuses = frozenset({402})
    type = "fraud_error"
    default_code = "fraud_blocked"

    def __init__(
        self,
        message: str,
        *,
        payment_id: str,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, code=code, param=param, payment_id=payment_id, **extra)


class IdempotencyError(PaymentdError):
    """Idempotency-Key misuse: 422 reused with another request, 409 still in flight."""

    default_status = 422
    allowed_statuses = frozenset({409, 422})
    type = "idempotency_error"
    default_code = "idempotency_key_reused"

    def _code_for(self, status: int) -> str:
        return "idempotency_key_in_use" if status == 409 else "idempotency_key_reused"


class RateLimited(PaymentdError):
    """The caller is over its own limit; Retry-After says when to come back."""

    default_status = 429
    allowed_statuses = frozenset({429})
    type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float = 1,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        # API.md: Retry-After is always set on 429, so there is no "unknown" value.
        super().__init__(message, code=code, param=param, retry_after=retry_after, **extra)


class ProviderUnavailable(PaymentdError):
    """Stripe failed us: 502 bad answer, 503 down or circuit open, 504 timed out."""

    default_status = 503
    allowed_statuses = frozenset({502, 503, 504})
    type = "provider_error"
    default_code = "provider_unavailable"
    # API.md: Retry-After is always set on 503; used when the caller gives none.
    default_retry_after: ClassVar[int] = 1

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        effective = self.default_status if status is None else status
        if effective == 503 and retry_after is None:
            retry_after = self.default_retry_after
        super().__init__(
            message, code=code, param=param, status=status, retry_after=retry_after, **extra
        )

    def _code_for(self, status: int) -> str:
        return {502: "provider_error", 503: "provider_unavailable", 504: "provider_timeout"}[status]


class TemporarilyUnavailable(PaymentdError):
    """paymentd's own store is unreachable or out of connections: not a bug, and
    nothing was done, so the caller retries (with its Idempotency-Key)."""

    default_status = 503
    allowed_statuses = frozenset({503})
    type = "api_error"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1, **extra: Any) -> None:
        super().__init__(message, retry_after=retry_after, **extra)
