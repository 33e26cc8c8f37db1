"""The shared outbound rate limit to Stripe: at most N requests in ANY one-second window across
every paymentd process (Redis when REDIS_URL is set, in-process otherwise), callers over the
budget waiting their turn fairly until their deadline, never forever. Built on `limits`."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from urllib.parse import urlsplit

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from paymentd import metrics
from paymentd.logs import log
from paymentd.providers.base import ProviderUnavailable

__all__ = [
    "STRIPE_ENDPOINT_LIMITS",
    "OutboundRateLimited",
    "StripeRateLimiter",
    "current_deadline",
    "endpoint_of",
    "outbound_deadline",
]

# Stripe's documented limits (https://docs.stripe.com/rate-limits), per account:
# - global: 100 requests/s in live mode, 25/s in test mode (sandbox) -> PAYMENTD_STRIPE_RPS;
# - every endpoint ("each named API operation": `POST /v1/payment_intents` and
#   `GET /v1/payment_intents/{id}` are two) has a default limit of 25/s that also counts against
#   the global one. Not applied unless asked (`per_endpoint={..., "*": 25}`): it would cap payment
#   creation at a quarter of a live account's budget, and Stripe raises it on request;
# - Files API: 20 reads/s and 20 writes/s; Search API (`.../search`): 20 reads/s;
# - Payment Intents: 1,000 updates per PaymentIntent per hour (paymentd touches an intent a
#   handful of times, so not enforced); Create Payout 15/s and Meter events 1,000/s (unused).
# Applied when `per_endpoint` is None. Keys: an exact endpoint ("POST /v1/refunds"), a family
# ("search": any `.../search`; "files": the Files API), or "*" (every other endpoint).
STRIPE_ENDPOINT_LIMITS: Mapping[str, int] = {"search": 20, "files": 20}

# A Stripe object id in a path: a lower-case prefix, "_", and a random part, which (24 base62
# characters) always has a digit or a capital. Resource names ("payment_intents") have neither.
_ID = re.compile(r"^[a-z]+_(?=[A-Za-z0-9]*[0-9A-Z])[A-Za-z0-9]+$")

# The deadline of the Stripe call in progress (absolute, time.monotonic()). GuardedProvider sets
# it per call; the service sets a longer one for work that goes on after its response budget.
_deadline: ContextVar[float | None] = ContextVar(
    "paymentd_outbound_deadline", default=None
)


class OutboundRateLimited(ProviderUnavailable):
    """Our own limiter refused to spend more of Stripe's budget before the caller's deadline.
    Nothing was sent; kind is "rate_limited" and `retry_after` estimates when a slot frees."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(
            message,
            kind="rate_limited",
            retry_after=retry_after,
            code="outbound_rate_limited",
        )


@contextlib.contextmanager
def outbound_deadline(deadline: float) -> Iterator[None]:
    """Every Stripe request made inside this block waits for the limiter at most until
    `deadline` (absolute time.monotonic()). Use for background work that may wait longer."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def current_deadline(default_wait_s: float) -> float:
    deadline = _deadline.get()
    return deadline if deadline is not None else time.monotonic() + default_wait_s


def endpoint_of(method: str, url: str) -> str:
    """Stripe's notion of an endpoint for one HTTP request: `GET /v1/payment_intents/{id}`."""
    parsed = urlsplit(url)
    parts = ["{id}" if _ID.match(p) else p for p in parsed.path.split("/") if p]
    path = "/" + "/".join(parts)
    if parsed.hostname and parsed.hostname.startswith("files."):
        path = "files:" + path  # files.stripe.com: the Files API family
    return f"{method.upper()} {path}"


def _family(endpoint: str) -> str | None:
    path = endpoint.split(" ", 1)[-1]
    if path.startswith(("files:", "/v1/files", "/v1/file_links")):
        return "files"
    if path.endswith("/search"):
        return "search"
    return None


def _storage_uri(redis_url: str) -> str:
    scheme, _, rest = redis_url.partition("://")
    return (
        {
            "redis": "async+redis",
            "rediss": "async+rediss",
            "unix": "async+redis+unix",
        }.get(scheme, f"async+{scheme}")
        + "://"
        + rest
    )


class StripeRateLimiter:
    """At most `rps` requests per any one-second window to Stripe, plus per-endpoint limits.

    `acquire(deadline)` takes one slot. Waiters in this process are served strictly first come,
    first served (one queue; only its head asks the storage); processes share the window in Redis
    and poll it with short jittered sleeps. When the window is full the head sleeps until its
    oldest entry is `guard_s` past expiry: entries are stamped when granted, Stripe counts on
    arrival, and the guard time absorbs the spread of send delays so the window also holds where
    Stripe measures it. Redis entries carry the client's wall clock: hosts must be NTP-synced.

    If Redis fails, the process falls back to an in-process window holding only its share of the
    limit (rps // processes, where `processes` is how many paymentd processes share it), so all of
    them together stay under it while none can count with the others. It says so (`degraded`,
    /readyz, the `paymentd_stripe_limiter_shared` gauge), tries Redis again every `retry_s`, and
    once Redis answers keeps counting its share locally too for `retry_s` + one window, by when
    every other process has also seen Redis back and counts there again.
    """

    def __init__(
        self,
        rps: int,
        *,
        redis_url: str | None,
        per_endpoint: Mapping[str, int] | None = None,
        key_prefix: str = "paymentd",
        guard_s: float = 0.1,
        spacing_s: float | None = None,
        processes: int = 1,
        retry_s: float = 2.0,
    ) -> None:
        if rps <= 0 or processes < 1:
            raise ValueError("rps and processes must be positive")
        self.rps = rps
        self.processes = processes
        self.retry_s = retry_s
        self.share = max(1, rps // processes)
        self.guard_s = guard_s
        # Grants from this process are at least spacing_s apart (default 1/rps): a burst is
        # sent as a stream, so send delays stay short and even and the window's edges stay sharp.
        self.spacing_s = 1 / rps if spacing_s is None else spacing_s
        self._next_at = 0.0
        self.shared = redis_url is not None
        self._storage: Storage = (
            RedisStorage(
                _storage_uri(redis_url),
                implementation="redispy",
                key_prefix=key_prefix,
                wrap_exceptions=True,
                # A Redis that does not answer must cost a call little: it is then skipped.
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
            )
            if redis_url
            else MemoryStorage()
        )
        self._strategy = MovingWindowRateLimiter(self._storage)
        self._global = RateLimitItemPerSecond(rps, namespace="stripe")
        limits = STRIPE_ENDPOINT_LIMITS if per_endpoint is None else per_endpoint
        self._endpoint_items = {
            key: RateLimitItemPerSecond(n, namespace="stripe-endpoint")
            for key, n in limits.items()
            if n > 0
        }
        # This process's share, counted in memory, while Redis cannot be used (and just after).
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._local_global = RateLimitItemPerSecond(self.share, namespace="stripe")
        self._local_endpoint_items = {
            key: RateLimitItemPerSecond(max(1, item.amount // processes), namespace="stripe-endpoint")
            for key, item in self._endpoint_items.items()
        }
        self._down = False
        self._next_try = 0.0
        self._careful_until = 0.0
        metrics.limiter_shared(self.shared)
        self._queue: deque[asyncio.Future[None]] = deque()

    # -- public

    def limit_for(
        self, endpoint: str | None
    ) -> tuple[str, RateLimitItemPerSecond] | None:
        """The endpoint's own limit, if any: exact endpoint, then its family, then "*"."""
        if endpoint is None:
            return None
        for key in (endpoint, _family(endpoint), "*"):
            if key is not None and key in self._endpoint_items:
                return key, self._endpoint_items[key]
        return None

    async def acquire(self, deadline: float, *, endpoint: str | None = None) -> None:
        """Wait for a slot until `deadline` (absolute time.monotonic()); then raise
        OutboundRateLimited. A caller whose place in the queue cannot be reached in time is
        refused at once rather than at its deadline."""
        loop = asyncio.get_running_loop()
        me: asyncio.Future[None] = loop.create_future()
        self._queue.append(me)
        entered = time.monotonic()
        granted = False
        try:
            ahead = len(self._queue) - 1
            remaining = deadline - time.monotonic()
            rps = self.share if self._down else self.rps
            if remaining <= 0 or ahead / rps > remaining:
                raise self._refused(max(ahead / rps, 1 / rps))
            try:
                async with asyncio.timeout(remaining):
                    if ahead:
                        await me  # set by the head before us when it leaves the queue
                    while True:
                        wait = self._next_at - time.monotonic()
                        if wait <= 0:
                            wait = await self._try_take(endpoint)
                            if wait <= 0:
                                self._next_at = time.monotonic() + self.spacing_s
                                granted = True
                                return
                        if time.monotonic() + wait > deadline:
                            raise self._refused(wait)
                        await asyncio.sleep(wait + random.uniform(0, 0.005))
            except TimeoutError:
                raise self._refused(max(ahead, 1) / self.rps) from None
        finally:
            metrics.limiter_wait(time.monotonic() - entered, granted=granted)
            was_head = bool(self._queue) and self._queue[0] is me
            self._queue.remove(me)
            if was_head and self._queue and not self._queue[0].done():
                self._queue[0].set_result(None)

    async def before_request(self, method: str, url: str) -> None:
        """A hook for the HTTP client: one slot per request actually sent, SDK retries included,
        within the deadline of the call in progress (see `outbound_deadline`)."""
        await self.acquire(current_deadline(1.0), endpoint=endpoint_of(method, url))

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def degraded(self) -> bool:
        """Redis is configured but this process cannot count there: it limits itself to its share."""
        return self._down

    def describe(self) -> dict[str, object]:
        """For /readyz: how this process counts its Stripe calls now."""
        if not self.shared:
            return {"mode": "per_process", "rps": self.rps}
        if self._down:
            return {"mode": "degraded", "rps": self.share, "limit_rps": self.rps, "processes": self.processes,
                    "reason": "Redis unreachable: this process limits itself to its share of the Stripe limit"}
        return {"mode": "shared", "rps": self.rps}

    async def probe(self) -> None:
        """Try Redis now if it has failed and its retry is due (so an idle process sees it back)."""
        if not (self.shared and self._down and time.monotonic() >= self._next_try):
            return
        try:
            await self._strategy.get_window_stats(self._global, "global")
        except StorageError:
            self._went_down()
        else:
            self._came_back()

    async def aclose(self) -> None:
        if isinstance(self._storage, RedisStorage):
            with contextlib.suppress(Exception):
                await self._storage.bridge.get_connection().aclose()  # type: ignore[attr-defined]

    # -- internals

    def _refused(self, retry_after: float) -> OutboundRateLimited:
        return OutboundRateLimited(
            "paymentd's outbound Stripe rate limit is exhausted until the deadline",
            retry_after=round(max(retry_after, 0.001), 3),
        )

    async def _try_take(self, endpoint: str | None) -> float:
        """0 when a slot was taken (in every window that applies), else seconds to wait."""
        if not self.shared:
            return await self._take(self._strategy, endpoint)
        now = time.monotonic()
        if self._down and now < self._next_try:
            return await self._take(self._local, endpoint, local=True)
        careful = self._down or now < self._careful_until
        if careful:
            # Our share first: until every process counts in Redis again, some may still count
            # only their share in memory, and Redis does not see those calls.
            wait = await self._take(self._local, endpoint, local=True)
            if wait > 0:
                return wait
        try:
            wait = await self._take(self._strategy, endpoint)
        except StorageError:
            self._went_down()
            return 0.0 if careful else await self._take(self._local, endpoint, local=True)
        if self._down:
            self._came_back()
        return wait

    def _went_down(self) -> None:
        self._next_try = time.monotonic() + self.retry_s
        if not self._down:
            self._down = True
            metrics.limiter_shared(False, lost=True)
            log.warning("stripe_limiter.redis_unreachable", share_rps=self.share, limit_rps=self.rps,
                        processes=self.processes, retry_s=self.retry_s)

    def _came_back(self) -> None:
        self._down = False
        # Others see Redis back within retry_s of us; a window later none counts only locally.
        self._careful_until = time.monotonic() + self.retry_s + 1.0 + self.guard_s
        metrics.limiter_shared(True)
        log.warning("stripe_limiter.redis_back", limit_rps=self.rps)

    async def _take(
        self, strategy: MovingWindowRateLimiter, endpoint: str | None, *, local: bool = False
    ) -> float:
        windows: list[tuple[RateLimitItemPerSecond, str]] = [
            (self._local_global if local else self._global, "global")]
        special = self.limit_for(endpoint)
        if special is not None:
            key, item = special
            if local:
                item = self._local_endpoint_items[key]
            # "*" is per endpoint; a named family or endpoint shares one window.
            windows.append((item, endpoint if key == "*" else key))  # type: ignore[arg-type]
        waits = []
        for item, ident in windows:
            stats = await strategy.get_window_stats(item, ident)
            if stats.remaining <= 0:
                waits.append(stats.reset_time - time.time() + self.guard_s)
        if waits:
            return max(max(waits), 0.001)
        # Narrowest window first: a slot taken there but lost on the global one is merely
        # wasted (stricter, never looser).
        for item, ident in reversed(windows):
            if not await strategy.hit(item, ident):
                return 0.002 + random.uniform(0, 0.003)  # another process won the race
        return 0.0
