"""A circuit breaker around Stripe: when Stripe keeps failing, fail at once (503 + Retry-After)
instead of piling requests onto it, and let one probe through after a pause to find out whether
it is back. Per process, asyncio-native, with an injectable clock for tests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

from paymentd.providers.base import ProviderError, ProviderUnavailable

__all__ = ["BreakerState", "CircuitBreaker", "counts_as_failure"]

T = TypeVar("T")
BreakerState = Literal["closed", "open", "half_open"]

# Only these mean "Stripe is not answering". A decline, an invalid request, a 409 lock or a 429
# (Stripe's or our own limiter's) are answers from a healthy Stripe, not outages.
_OUTAGE_KINDS = frozenset({"connection", "timeout", "server"})


def counts_as_failure(exc: BaseException) -> bool:
    return isinstance(exc, ProviderUnavailable) and exc.kind in _OUTAGE_KINDS


class CircuitBreaker:
    """closed -> open after `failures` consecutive outage failures; open -> half_open once
    `reset_s` has passed, when exactly ONE call (the probe) is let through; its success closes
    the circuit, its failure opens it again for another `reset_s`.

    Why our own class: `aiobreaker` is unmaintained (last release 2021), `pybreaker`'s async
    support is Tornado-based, and `purgatory` (asyncio) reads time.time() directly (no fake
    clock), lets every call through while half-open instead of one probe, and has no
    "retry after" for the open state. This is ~100 lines with no I/O.

    Why per process: the state is cheap to rediscover (each process trips after `failures`
    calls of its own), a shared breaker would turn one process's network trouble into an outage
    for all, and it keeps Redis off the failure path.

    Results of calls admitted before the circuit opened (or while a probe is out) are ignored:
    only the probe decides how an open circuit ends.
    """

    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if failures < 1 or reset_s <= 0:
            raise ValueError("failures must be >= 1 and reset_s > 0")
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._open = False
        self._opened_at = 0.0
        self._consecutive = 0
        self._probe_out = False
        self.opened_count = 0  # times the circuit opened (for metrics)
        self._on_change = on_change  # called with True when the circuit opens, False when it closes

    # -- state

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return "closed"
        if self._probe_out or self._clock() - self._opened_at >= self.reset_s:
            return "half_open"
        return "open"

    @property
    def retry_after(self) -> float:
        """Seconds until a probe may go (0 when closed)."""
        if not self._open:
            return 0.0
        return max(self._opened_at + self.reset_s - self._clock(), 0.0)

    # -- protocol for one call: admit(), then exactly one of success/failure/abandon

    def admit(self) -> bool:
        """Let a call through, or raise ProviderUnavailable(kind="server", retry_after=...) at
        once. Returns True when this call is the half-open probe."""
        if not self._open:
            return False
        remaining = self._opened_at + self.reset_s - self._clock()
        if remaining > 0:
            raise self._rejection(remaining)
        if self._probe_out:
            # One probe at a time; the rest learn the outcome shortly.
            raise self._rejection(min(self.reset_s, 1.0))
        self._probe_out = True
        return True

    def success(self, probe: bool) -> None:
        if probe or not self._open:
            self._close()

    def failure(self, exc: BaseException, probe: bool) -> None:
        """Record how a call ended in an exception; only outage failures count."""
        if not counts_as_failure(exc):
            # Stripe answered (decline, bad request, 429...): it is up.
            self.success(probe)
            return
        if probe:
            self._trip()
        elif not self._open:
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._trip()

    def abandon(self, probe: bool) -> None:
        """The call never reached Stripe (our limiter refused, or it was cancelled)."""
        if probe:
            self._probe_out = False

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        probe = self.admit()
        try:
            result = await fn()
        except ProviderUnavailable as exc:
            if exc.code == "outbound_rate_limited":
                self.abandon(probe)
            else:
                self.failure(exc, probe)
            raise
        except Exception as exc:
            if isinstance(exc, ProviderError):
                self.failure(exc, probe)
            else:
                self.abandon(probe)  # our bug or bad input: says nothing about Stripe
            raise
        except BaseException:
            self.abandon(probe)  # cancelled
            raise
        self.success(probe)
        return result

    # -- internals

    def _rejection(self, retry_after: float) -> ProviderUnavailable:
        return ProviderUnavailable(
            "Stripe is failing; the circuit breaker is open",
            kind="server",
            retry_after=round(max(retry_after, 0.001), 3),
            code="circuit_open",
        )

    def _trip(self) -> None:
        self._open = True
        self._opened_at = self._clock()
        self._probe_out = False
        self._consecutive = 0
        self.opened_count += 1
        if self._on_change is not None:
            self._on_change(True)

    def _close(self) -> None:
        if self._open and self._on_change is not None:
            self._on_change(False)
        self._open = False
        self._probe_out = False
        self._consecutive = 0
