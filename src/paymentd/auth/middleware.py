"""Authentication first: every /api request with a bearer key is authenticated here,
before admission and the Idempotency-Key claim, and the inbound limits are applied.

Order of checks: an address blocked for failed authentications gets 429 without its key
being looked at; then the key (cached, auth/cache.py); a refused key is a 401 and counts
as a failure of its address; then the account's request limit (429). What passes carries
its principal in `scope["state"]["principal"]`: admission queues it with its account, the
idempotency layer authorizes replays with it, the route's dependency reuses it.
A request with no key at all passes through: its route answers 401 (no key is no guess).
The Stripe webhook (signed, not keyed) and everything outside /api are never limited here.
"""

from __future__ import annotations

from types import SimpleNamespace

from starlette.types import ASGIApp, Receive, Scope, Send

from paymentd.audit import failures as audit_failures

from paymentd.auth.service import Principal
from paymentd.errors import AuthenticationFailed, PaymentdError, RateLimited
from paymentd.http import send_error

NOT_KEYED = frozenset({"/api/webhooks/stripe"})


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def client_address(scope: Scope) -> str:
    # uvicorn sets it from X-Forwarded-For / Forwarded only for trusted proxies
    # (FORWARDED_ALLOW_IPS), so a client cannot pick its own address here.
    client = scope.get("client")
    return client[0] if client else "unknown"


def refused_key(reason: str) -> AuthenticationFailed:
    if reason == "expired":  # only the key's holder can get this answer: it knows the secret
        return AuthenticationFailed("This API key has expired.", code="api_key_expired")
    return AuthenticationFailed("The API key is invalid or revoked.", code="api_key_invalid")


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/") or scope["path"] in NOT_KEYED:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        try:
            checked = await authenticate_key(scope, token)
            await check_account_limit(scope, checked)
        except PaymentdError as error:
            await send_error(send, error, scope["state"]["request_id"])
            return
        scope["state"]["principal"] = checked
        await self.app(scope, receive, send)


async def authenticate_key(scope: Scope, token: str) -> Principal:
    """The principal of a live key, or the error to answer: 429 while the client's address
    is blocked for failed authentications, else 401 for a refused key, counted against the
    address and written to the audit trail (aggregated, audit/failures.py). The dashboard's
    sign-in goes through here too, so a key guessed there is throttled the same way."""
    state = scope["app"].state
    throttle = getattr(state, "throttle", None)
    address = client_address(scope)
    if throttle is not None and (wait := throttle.blocked_for(address)) is not None:
        raise _too_many_failures(wait)
    checked = await state.authenticator.check(token)
    if not isinstance(checked, Principal):
        audit_failures.note(SimpleNamespace(scope=scope), 401, token, checked.account_id)
        wait = await throttle.failed(address) if throttle is not None else None
        raise _too_many_failures(wait) if wait is not None else refused_key(checked.reason)
    return checked


async def check_account_limit(scope: Scope, principal: Principal) -> None:
    """429 when the principal's account is over its inbound request limit."""
    throttle = getattr(scope["app"].state, "throttle", None)
    if throttle is None:
        return
    wait = await throttle.account_retry_after(str(principal.account_id), principal.rate_limit_rps)
    if wait is not None:
        raise RateLimited("This account is over its request rate limit; retry after the "
                          "time in Retry-After.", code="account_rate_limited", retry_after=wait)


def _too_many_failures(wait: int) -> RateLimited:
    return RateLimited("Too many failed authentications from this address; retry after the time in "
                       "Retry-After.", code="too_many_failed_authentications", retry_after=wait)
