"""Inbound limits: requests per second per account, and failed authentications per client address.

Both count across every paymentd process in Redis when REDIS_URL is set, with the
`limits` library, as the outbound Stripe limit does. If Redis fails, counting falls
back to this process (logged once) rather than failing requests. Without Redis the
per-account limit, counted on every request, is `_LocalWindows`: the same sliding
window counter as `limits`', in plain dictionaries (a few microseconds, where
`limits`' MemoryStorage spent several awaits and key formatting per request).

Failed authentications are counted in the shared store, but the decision "this address
is blocked" is cached in each process until the window ends, so the hot path of a valid
key costs no round trip for it: a process learns of a block on the first failure it
sees itself, so a guesser gets at most one more checked guess per process and window.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, RateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from paymentd.logs import log
from paymentd.providers.limiter import _storage_uri  # the same URL mapping as the outbound limit

_MAX_BLOCKED = 10_000


class _Counter:
    """A `limits` strategy on the shared storage, with a per-process fallback while the shared
    storage fails, tried again every `retry_s` (so a Redis that comes back is used again)."""

    def __init__(self, storage: Storage, strategy: type[RateLimiter], retry_s: float = 2.0) -> None:
        self._strategy_type = strategy
        self._shared = strategy(storage)
        self._fallback: RateLimiter | None = None
        self._retry_s = retry_s
        self._retry_at = 0.0

    async def run(self, method: str, item: RateLimitItem, ident: str):  # type: ignore[no-untyped-def]
        if self._fallback is None or time.monotonic() >= self._retry_at:
            try:
                result = await getattr(self._shared, method)(item, ident)
            except StorageError:
                if self._fallback is None:
                    log.warning("inbound_limit.storage_failed; counting in this process only", exc_info=True)
                    self._fallback = self._strategy_type(MemoryStorage())
                self._retry_at = time.monotonic() + self._retry_s
            else:
                if self._fallback is not None:
                    log.warning("inbound_limit.storage_back")
                    self._fallback = None
                return result
        return await getattr(self._fallback, method)(item, ident)


class _LocalWindows:
    """Per-account sliding window counters of one-second windows, in this process: the
    current second's count plus the previous second's, weighted by how much of it the
    sliding window still covers (`limits`' SlidingWindowCounter, without storage)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, list[int]] = {}  # ident -> [window start (whole s), previous, current]
        self._max_keys = max_keys

    def hit(self, ident: str, limit: int, now: float) -> bool:
        second = int(now)
        window = self._windows.get(ident)
        if window is None:
            if len(self._windows) >= self._max_keys:  # bounded: drop counters idle for 2 s or more
                self._windows = {k: w for k, w in self._windows.items() if w[0] >= second - 1}
            window = self._windows[ident] = [second, 0, 0]
        elif window[0] != second:
            window[1] = window[2] if window[0] == second - 1 else 0
            window[0], window[2] = second, 0
        weighted = window[1] * (1.0 - (now - second)) + window[2]
        if math.floor(weighted) + 1 > limit:
            return False
        window[2] += 1
        return True


class Throttle:
    """The per-account request limit and the per-address failed-authentication throttle."""

    def __init__(
        self,
        *,
        redis_url: str | None,
        default_rps: int,
        auth_fail_limit: int,
        auth_fail_window_s: int,
        key_prefix: str = "paymentd",
    ) -> None:
        storage: Storage = (
            RedisStorage(_storage_uri(redis_url), implementation="redispy", key_prefix=key_prefix,
                         wrap_exceptions=True, socket_timeout=1.0, socket_connect_timeout=1.0)
            if redis_url
            else MemoryStorage()
        )
        self._storage = storage
        self.default_rps = default_rps
        self._local = None if redis_url else _LocalWindows()
        # A sliding window: no double burst at a fixed window's edge, two counters per key.
        self._requests = _Counter(storage, SlidingWindowCounterRateLimiter)
        self._items: dict[int, RateLimitItem] = {}
        self.auth_fail_limit = auth_fail_limit
        self._failures = _Counter(storage, FixedWindowRateLimiter)
        self._failure_item = (
            RateLimitItemPerSecond(auth_fail_limit, auth_fail_window_s, namespace="auth-fail")
            if auth_fail_limit > 0
            else None
        )
        self._blocked: dict[str, float] = {}  # address -> time.time() when its window ends

    async def account_retry_after(self, account_id: str, rps: int | None) -> int | None:
        """Count one request of the account; None when within its limit, else the seconds
        until it may try again. `rps` is the account's own limit (None: the default; 0: none)."""
        limit = self.default_rps if rps is None else rps
        if limit <= 0:
            return None
        if self._local is not None:
            now = time.time()
            return None if self._local.hit(account_id, limit, now) else _seconds(1.0 - (now % 1.0), at_most=1)
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = RateLimitItemPerSecond(limit, namespace="account-rps")
        if await self._requests.run("hit", item, account_id):
            return None
        stats = await self._requests.run("get_window_stats", item, account_id)
        return _seconds(stats.reset_time - time.time(), at_most=1)

    def blocked_for(self, address: str) -> int | None:
        """Seconds this address stays blocked for failed authentications, None if it is not.
        No I/O: see the module's docstring."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - time.time()
        if left <= 0:
            del self._blocked[address]
            return None
        return _seconds(left, at_most=self._failure_item.get_expiry() if self._failure_item else 1)

    async def failed(self, address: str) -> int | None:
        """Count a failed authentication from `address`. The one that reaches the limit
        blocks the address for the rest of the window (its own answer stays a 401); one
        past the limit (counted by another process) returns the seconds left to block."""
        item = self._failure_item
        if item is None:
            return None
        counted = await self._failures.run("hit", item, address)
        if counted and await self._failures.run("test", item, address):
            return None  # still under the limit after this failure
        stats = await self._failures.run("get_window_stats", item, address)
        if len(self._blocked) >= _MAX_BLOCKED:
            now = time.time()
            self._blocked = {a: t for a, t in self._blocked.items() if t > now}
        self._blocked[address] = max(stats.reset_time, time.time() + 1)
        return self.blocked_for(address) if not counted else None

    async def aclose(self) -> None:
        if isinstance(self._storage, RedisStorage):
            try:
                await self._storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


def _seconds(value: float, *, at_most: float) -> int:
    """Whole seconds for Retry-After, never 0 (a client would retry at once)."""
    return max(1, math.ceil(min(value, at_most)))
