"""The error tree and its one mapping to API.md's envelope."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paymentd import errors
from paymentd.errors import (
    AuthenticationFailed,
    CardDeclined,
    Conflict,
    FraudBlocked,
    IdempotencyError,
    InvalidRequest,
    NotFound,
    PaymentdError,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    Unprocessable,
)

# API.md's table: type -> statuses it may use.
CONTRACT = {
    "invalid_request_error": {400, 404, 409, 422},
    "authentication_error": {401},
    "permission_error": {403},
    "card_error": {402},
    "fraud_error": {402},
    "idempotency_error": {409, 422},
    "rate_limit_error": {429},
    "provider_error": {502, 503, 504},
    "api_error": {500},
}


def _make(cls: type[PaymentdError], **kw: object) -> PaymentdError:
    if cls is CardDeclined:
        kw = {"decline_code": "insufficient_funds", "payment_id": "p1", **kw}
    if cls is FraudBlocked:
        kw = {"payment_id": "p1", **kw}
    return cls("Something went wrong.", **kw)  # type: ignore[arg-type]


ALL = [
    PaymentdError, InvalidRequest, NotFound, Conflict, Unprocessable, AuthenticationFailed,
    PermissionDenied, CardDeclined, FraudBlocked, IdempotencyError, RateLimited, ProviderUnavailable,
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "status", "type_", "code"),
    [
        (PaymentdError, 500, "api_error", "internal_error"),
        (InvalidRequest, 400, "invalid_request_error", "invalid_request"),
        (NotFound, 404, "invalid_request_error", "resource_missing"),
        (Conflict, 409, "invalid_request_error", "invalid_state"),
        (Unprocessable, 422, "invalid_request_error", "unprocessable_entity"),
        (AuthenticationFailed, 401, "authentication_error", "invalid_api_key"),
        (PermissionDenied, 403, "permission_error", "missing_scope"),
        (CardDeclined, 402, "card_error", "card_declined"),
        (FraudBlocked, 402, "fraud_error", "fraud_blocked"),
        (IdempotencyError, 422, "idempotency_error", "idempotency_key_reused"),
        (RateLimited, 429, "rate_limit_error", "rate_limited"),
        (ProviderUnavailable, 503, "provider_error", "provider_unavailable"),
    ],
)
def test_defaults(cls: type[PaymentdError], status: int, type_: str, code: str) -> None:
    err = _make(cls)
    assert (err.status, err.type, err.code) == (status, type_, code)
    assert err.param is None


def test_tree_shape() -> None:
    for cls in (NotFound, Conflict, Unprocessable):
        assert issubclass(cls, InvalidRequest)
    for cls in ALL:
        assert issubclass(cls, PaymentdError) and issubclass(cls, Exception)


@pytest.mark.parametrize("cls", ALL)
def test_every_class_stays_within_api_md(cls: type[PaymentdError]) -> None:
    if cls is InvalidRequest:
        # HTTP-level 4xx refusals (405, 413, ...) are allowed, never another type's status.
        assert CONTRACT[cls.type] <= cls.allowed_statuses
        others = set().union(*(v for k, v in CONTRACT.items() if k != cls.type)) - CONTRACT[cls.type]
        assert not (cls.allowed_statuses & others)
        assert all(400 <= s < 500 for s in cls.allowed_statuses)
    else:
        assert cls.allowed_statuses <= CONTRACT[cls.type]
    assert cls.default_status in cls.allowed_statuses


def test_envelope_exactly_as_api_md() -> None:
    err = InvalidRequest("Amount is below the minimum.", code="amount_too_small", param="amount")
    assert err.envelope("req_123") == {
        "error": {
            "type": "invalid_request_error",
            "code": "amount_too_small",
            "message": "Amount is below the minimum.",
            "param": "amount",
            "request_id": "req_123",
        }
    }


def test_param_null_is_kept() -> None:
    body = NotFound("No such payment.").envelope("req_1")["error"]
    assert "param" in body and body["param"] is None


def test_card_declined_body_has_decline_code_and_payment_id() -> None:
    err = CardDeclined("Your card has insufficient funds.", decline_code="insufficient_funds", payment_id="p-1")
    body = err.envelope("req_9")["error"]
    assert body["type"] == "card_error" and body["code"] == "card_declined"
    assert body["decline_code"] == "insufficient_funds" and body["payment_id"] == "p-1"
    assert err.extra == {"decline_code": "insufficient_funds", "payment_id": "p-1"}
    with pytest.raises(TypeError):
        CardDeclined("declined")  # type: ignore[call-arg]


def test_fraud_blocked_body_has_payment_id() -> None:
    body = FraudBlocked("Blocked.", payment_id="p-2").envelope("r")["error"]
    assert body["type"] == "fraud_error" and body["payment_id"] == "p-2"


def test_http_level_statuses() -> None:
    err = InvalidRequest("The request body is too large.", code="body_too_large", status=413)
    assert (err.status, err.type) == (413, "invalid_request_error")
    assert InvalidRequest("Method not allowed.", status=405).status == 405
    for status in (401, 402, 403, 429, 500, 200):
        with pytest.raises(ValueError):
            InvalidRequest("x", status=status)
    with pytest.raises(ValueError):
        NotFound("x", status=413)


def test_idempotency_statuses() -> None:
    assert IdempotencyError("in flight", status=409).code == "idempotency_key_in_use"
    assert IdempotencyError("reused", status=422).code == "idempotency_key_reused"
    with pytest.raises(ValueError):
        IdempotencyError("x", status=400)


def test_provider_statuses_and_retry_after() -> None:
    down = ProviderUnavailable("Stripe is unavailable.")
    assert down.status == 503 and down.headers() == {"Retry-After": "1"}
    assert ProviderUnavailable("open", status=503, retry_after=30).headers() == {"Retry-After": "30"}
    bad = ProviderUnavailable("bad gateway", status=502)
    assert bad.code == "provider_error" and bad.headers() == {}
    slow = ProviderUnavailable("timeout", status=504)
    assert slow.code == "provider_timeout" and slow.headers() == {}
    with pytest.raises(ValueError):
        ProviderUnavailable("x", status=500)


def test_rate_limited_always_has_retry_after() -> None:
    assert RateLimited("slow down").headers() == {"Retry-After": "1"}
    assert RateLimited("slow down", retry_after=2.1).headers() == {"Retry-After": "3"}
    with pytest.raises(ValueError):
        RateLimited("x", retry_after=-1)
    with pytest.raises(ValueError):
        RateLimited("x", retry_after=float("inf"))


def test_authentication_failed_names_the_scheme() -> None:
    assert AuthenticationFailed("bad key").headers()["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("cls", [NotFound, Conflict, PermissionDenied, PaymentdError])
def test_single_status_classes_refuse_other_statuses(cls: type[PaymentdError]) -> None:
    with pytest.raises(ValueError):
        cls("x", status=418)


def test_overrides_and_extra() -> None:
    err = Conflict("Refund exceeds the refundable amount.", code="amount_exceeds_refundable", param="amount")
    assert (err.status, err.code, err.param) == (409, "amount_exceeds_refundable", "amount")
    err = InvalidRequest("bad", code="card_data_not_allowed", param="metadata.note", hint="x")
    assert err.envelope("r")["error"]["hint"] == "x"


@pytest.mark.parametrize("key", ["type", "message", "request_id"])
def test_extra_cannot_forge_envelope_keys(key: str) -> None:
    # (code and param are ordinary arguments; these three are not settable.)
    with pytest.raises((ValueError, TypeError)):
        InvalidRequest("x", **{key: "forged"})  # type: ignore[arg-type]


def test_message_is_required() -> None:
    with pytest.raises(TypeError):
        InvalidRequest("")


def test_str_and_repr() -> None:
    err = NotFound("No such payment.")
    assert str(err) == "No such payment."
    assert "NotFound" in repr(err) and "404" in repr(err)


def test_errors_imports_nothing_of_paymentd() -> None:
    tree = ast.parse(Path(errors.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("paymentd") and node.level == 0


@given(
    st.sampled_from(ALL),
    st.text(min_size=1, max_size=50),
    st.one_of(st.none(), st.text(max_size=20)),
    st.text(min_size=1, max_size=30),
)
def test_envelope_shape_for_any_error(
    cls: type[PaymentdError], message: str, param: str | None, request_id: str
) -> None:
    err = _make(cls, param=param)
    err.message = message
    body = err.envelope(request_id)
    assert list(body) == ["error"]
    inner = body["error"]
    assert list(inner)[:5] == ["type", "code", "message", "param", "request_id"]
    assert inner["type"] == cls.type and inner["request_id"] == request_id
    assert inner["message"] == message and inner["param"] == param
    assert err.status in CONTRACT[err.type]
    if err.status in (429, 503):
        assert "Retry-After" in err.headers()
