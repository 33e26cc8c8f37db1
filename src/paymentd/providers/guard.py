"""The outbound guard: a PaymentProvider that wraps another with the shared Stripe rate limit and
the circuit breaker, so the rest of paymentd gets both by receiving "a PaymentProvider" and never
hammers Stripe, waits past its deadline, or calls a Stripe that is down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from paymentd import metrics
from paymentd.providers.base import (
    CardFacts,
    PaymentMethodInfo,
    PaymentProvider,
    ProviderAuthError,
    ProviderDeclined,
    ProviderError,
    ProviderEvent,
    ProviderInvalidRequest,
    ProviderPayment,
    ProviderRefund,
    ProviderReview,
    ProviderUnavailable,
)
from paymentd.providers.breaker import CircuitBreaker
from paymentd.providers.limiter import (
    OutboundRateLimited,
    StripeRateLimiter,
    current_deadline,
    outbound_deadline,
)

if TYPE_CHECKING:
    from paymentd.config import Settings

__all__ = [
    "CircuitBreaker",
    "GuardedProvider",
    "OutboundRateLimited",
    "StripeRateLimiter",
    "build_guarded_provider",
    "outbound_deadline",
]

T = TypeVar("T")

# The Stripe endpoint each provider call uses (for per-endpoint limits when counting per call).
_PI = "/v1/payment_intents"
_ENDPOINTS = {
    "create_customer": "POST /v1/customers",
    "create_payment": f"POST {_PI}",
    "confirm_payment": f"POST {_PI}/{{id}}/confirm",
    "capture_payment": f"POST {_PI}/{{id}}/capture",
    "cancel_payment": f"POST {_PI}/{{id}}/cancel",
    "retrieve_payment": f"GET {_PI}/{{id}}",
    "approve_review": "POST /v1/reviews/{id}/approve",
    "retrieve_review": "GET /v1/reviews/{id}",
    "create_refund": "POST /v1/refunds",
    "retrieve_refund": "GET /v1/refunds/{id}",
    "retrieve_payment_method": "GET /v1/payment_methods/{id}",
    "card_facts": "GET /v1/payment_methods/{id}",
    "attach_payment_method": "POST /v1/payment_methods/{id}/attach",
    "detach_payment_method": "POST /v1/payment_methods/{id}/detach",
    "list_payment_methods": "GET /v1/customers/{id}/payment_methods",
    "list_events": "GET /v1/events",
    "ping": "GET /v1/customers",
}


class GuardedProvider:
    """PaymentProvider by delegation: breaker first (fail fast, spend no rate budget), then the
    rate limiter, then the inner provider.

    Counting: with `limit_per_call=True` one slot is taken per provider call. That is exact only
    when the inner provider makes one HTTP request per call, i.e. with `max_network_retries=0`
    (each SDK retry is a request Stripe counts) and for one page of a list. With
    `limit_per_call=False` the inner provider's HTTP client calls `limiter.before_request` for
    every request it actually sends (retries and pages included), which is exact;
    `build_guarded_provider` picks that mode when the inner provider offers `set_request_hook`.

    Deadlines: a call waits for the limiter until the deadline set with `outbound_deadline(...)`
    around it, or `default_wait_s` from now (the response budget). Work that goes on after the
    budget (the 202 path, jobs, the reconciler) should set a longer one.

    `ping()` obeys the breaker like any call: while open it fails at once (so /readyz says
    "circuit open" without touching Stripe); once `reset_s` has passed it is allowed to be the
    half-open probe, so /readyz itself closes the circuit when Stripe is back. When the limiter
    has no slot for it in time and the circuit is closed, it returns without a request: Stripe is
    answering the calls that fill the window, and a busy process must not report itself unready.
    """

    def __init__(
        self,
        inner: PaymentProvider,
        *,
        limiter: StripeRateLimiter,
        breaker: CircuitBreaker,
        limit_per_call: bool = True,
        default_wait_s: float = 0.4,
        ping_wait_s: float = 0.2,
    ) -> None:
        self.inner = inner
        self.limiter = limiter
        self.breaker = breaker
        self.limit_per_call = limit_per_call
        self.default_wait_s = default_wait_s
        self.ping_wait_s = ping_wait_s

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def sandbox(self) -> bool:  # type: ignore[override]
        return self.inner.sandbox

    @property
    def livemode(self) -> bool:  # type: ignore[override]
        return bool(getattr(self.inner, "livemode", False))

    @property
    def circuit_state(self) -> str:
        return self.breaker.state

    # -- the guard

    async def _guarded(
        self, op: str, fn: Callable[[], Awaitable[T]], wait_s: float | None = None
    ) -> T:
        deadline = current_deadline(self.default_wait_s if wait_s is None else wait_s)

        async def attempt() -> T:
            if self.limit_per_call:
                await self.limiter.acquire(deadline, endpoint=_ENDPOINTS[op])
            return await fn()

        started = time.perf_counter()
        outcome = "error"
        try:
            with outbound_deadline(deadline):
                result = await self.breaker.call(attempt)
            outcome = "ok"
            return result
        except ProviderError as error:
            outcome = call_outcome(error)
            raise
        finally:
            metrics.stripe_call(op, outcome, time.perf_counter() - started)

    # -- customers and payments

    async def create_customer(self, **kwargs: Any) -> str:
        return await self._guarded(
            "create_customer", lambda: self.inner.create_customer(**kwargs)
        )

    async def create_payment(self, **kwargs: Any) -> ProviderPayment:
        return await self._guarded(
            "create_payment", lambda: self.inner.create_payment(**kwargs)
        )

    async def confirm_payment(self, payment_id: str, **kwargs: Any) -> ProviderPayment:
        return await self._guarded(
            "confirm_payment", lambda: self.inner.confirm_payment(payment_id, **kwargs)
        )

    async def capture_payment(self, payment_id: str, **kwargs: Any) -> ProviderPayment:
        return await self._guarded(
            "capture_payment", lambda: self.inner.capture_payment(payment_id, **kwargs)
        )

    async def cancel_payment(self, payment_id: str, **kwargs: Any) -> ProviderPayment:
        return await self._guarded(
            "cancel_payment", lambda: self.inner.cancel_payment(payment_id, **kwargs)
        )

    async def retrieve_payment(self, payment_id: str) -> ProviderPayment:
        return await self._guarded(
            "retrieve_payment", lambda: self.inner.retrieve_payment(payment_id)
        )

    # -- Radar

    async def approve_review(self, review_id: str, **kwargs: Any) -> ProviderReview:
        return await self._guarded("approve_review", lambda: self.inner.approve_review(review_id, **kwargs))

    async def retrieve_review(self, review_id: str) -> ProviderReview:
        return await self._guarded("retrieve_review", lambda: self.inner.retrieve_review(review_id))

    # -- refunds

    async def create_refund(self, **kwargs: Any) -> ProviderRefund:
        return await self._guarded(
            "create_refund", lambda: self.inner.create_refund(**kwargs)
        )

    async def retrieve_refund(self, refund_id: str) -> ProviderRefund:
        return await self._guarded(
            "retrieve_refund", lambda: self.inner.retrieve_refund(refund_id)
        )

    # -- payment methods

    async def retrieve_payment_method(
        self, payment_method_id: str
    ) -> PaymentMethodInfo:
        return await self._guarded(
            "retrieve_payment_method",
            lambda: self.inner.retrieve_payment_method(payment_method_id),
        )

    async def card_facts(self, payment_method_id: str) -> CardFacts:
        return await self._guarded("card_facts", lambda: self.inner.card_facts(payment_method_id))

    async def attach_payment_method(
        self, payment_method_id: str, **kwargs: Any
    ) -> PaymentMethodInfo:
        return await self._guarded(
            "attach_payment_method",
            lambda: self.inner.attach_payment_method(payment_method_id, **kwargs),
        )

    async def detach_payment_method(
        self, payment_method_id: str, **kwargs: Any
    ) -> PaymentMethodInfo:
        return await self._guarded(
            "detach_payment_method",
            lambda: self.inner.detach_payment_method(payment_method_id, **kwargs),
        )

    async def list_payment_methods(self, customer: str) -> list[PaymentMethodInfo]:
        return await self._guarded(
            "list_payment_methods", lambda: self.inner.list_payment_methods(customer)
        )

    # -- events: each page fetch is guarded on its own (the deadline never spans a `yield`)

    async def list_events(
        self, *, created_gte: datetime, types: Sequence[str] | None = None
    ) -> AsyncIterator[ProviderEvent]:
        pages = self.inner.list_events(created_gte=created_gte, types=types).__aiter__()
        first = True
        while True:
            done = False

            async def next_event() -> ProviderEvent | None:
                nonlocal done
                try:
                    return await pages.__anext__()
                except StopAsyncIteration:
                    done = True
                    return None

            if first or not self.limit_per_call:
                event = await self._guarded("list_events", next_event)
            else:
                # Per-call counting: one slot for the listing; later pages are not counted.
                event = await next_event()
            first = False
            if done or event is None:
                return
            yield event

    # -- no network

    def parse_webhook(self, payload: bytes, signature_header: str) -> ProviderEvent:
        return self.inner.parse_webhook(payload, signature_header)

    # -- lifecycle

    async def ping(self) -> None:
        try:
            await self._guarded("ping", self.inner.ping, wait_s=self.ping_wait_s)
        except OutboundRateLimited:
            if self.breaker.state != "closed":
                raise

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            await self.limiter.aclose()


def call_outcome(error: ProviderError) -> str:
    """A failed call's outcome label: what kind of answer (or silence) it was."""
    if isinstance(error, ProviderDeclined):
        return "declined"
    if isinstance(error, ProviderInvalidRequest):
        return "invalid_request"
    if isinstance(error, ProviderAuthError):
        return "auth_error"
    if isinstance(error, ProviderUnavailable):
        if error.code in ("circuit_open", "outbound_rate_limited"):
            return error.code
        return f"unavailable_{error.kind}"  # connection, timeout, server, rate_limited, conflict
    return "error"


# The limiter counts a request when it grants it, Stripe when the request arrives; on a
# busy host the gap between the two varies by tens of milliseconds, enough to push a
# one-second window a few requests over. Aiming 10% under the limit absorbs it.
HEADROOM = 0.9


def aimed_rps(limit: int) -> int:
    return max(1, int(limit * HEADROOM))


def build_guarded_provider(
    inner: PaymentProvider,
    settings: Settings,
    *,
    per_endpoint: Mapping[str, int] | None = None,
    key_prefix: str | None = None,
) -> GuardedProvider:
    """The guard as configured: `stripe_rps` shared through `redis_url` (in-process when None),
    `breaker_failures`/`breaker_reset_s`, and the response budget `sync_budget_ms` as the
    default wait. Counts every HTTP request when `inner` offers `set_request_hook(hook)`,
    one slot per call otherwise."""
    limiter = StripeRateLimiter(
        aimed_rps(settings.stripe_rps),
        redis_url=settings.redis_url,
        per_endpoint=per_endpoint,
        key_prefix=key_prefix or settings.redis_key_prefix,
        processes=settings.stripe_processes,
        retry_s=settings.redis_retry_s,
    )
    breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s, on_change=metrics.circuit)
    set_hook = getattr(inner, "set_request_hook", None)
    if callable(set_hook):
        set_hook(limiter.before_request)
    return GuardedProvider(
        inner,
        limiter=limiter,
        breaker=breaker,
        limit_per_call=not callable(set_hook),
        default_wait_s=settings.stripe_queue_wait_s,
    )
