"""Admission: at most N requests at work in a process, shared fairly between accounts,
and overload answered fast.

The requests of a process share one event loop and one database pool. Past a few
dozen at once they only slow each other down: a burst of 500 made every one of them
wait seconds, far past the response budget. So at most `limit` run at once; the
others wait their turn for at most `max_wait_s`, and past that get 503 with
Retry-After before anything was done (no Idempotency-Key claimed, nothing written),
so the caller retries with the same key when there is room.

Fairness: one account's burst must not make another account's requests fail (100
slow creates of one account once made 12 of 20 reads of another answer 503). Requests
are authenticated before admission (auth/middleware.py), so each waits in its
account's own queue; freed places go round-robin between accounts, and an account
already holding its fair share ((limit - reserve) / accounts active) may not take the
last `reserve` free places: there is always room for an account that arrives later.
Requests without a key share one queue; Stripe's webhook has its own.
Health checks and metrics are never held back. (Retry-After stays 1 s: an estimate
of the queue's drain time sent a burst's callers away for seconds and doubled the time
until all of it was served, in bench/seed_scenario.py.)
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable

from starlette.types import ASGIApp, Receive, Scope, Send

from paymentd import metrics
from paymentd.errors import TemporarilyUnavailable
from paymentd.http import send_error

NEVER_HELD = frozenset({"/healthz", "/readyz", "/metrics"})
_WEBHOOK = "/api/webhooks/stripe"


class Admission:
    """A gate of `limit` places shared between tenants (accounts), with a bounded wait.

    Within a tenant, first come first served; between tenants, round-robin. A tenant
    holding at least its fair share may not take a place that would leave fewer than
    `reserve` free (default a quarter of the places).
    """

    def __init__(self, limit: int, max_wait_s: float, *, reserve: int | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.reserve = limit // 4 if reserve is None else max(0, min(reserve, limit - 1))
        self.running = 0
        self._held: dict[Hashable, int] = {}
        # Tenants with waiters, in round-robin order (the next to serve first).
        self._queues: OrderedDict[Hashable, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def held(self, tenant: Hashable = None) -> int:
        return self._held.get(tenant, 0)

    async def enter(self, tenant: Hashable = None) -> bool:
        """True with a place taken (give it back with `leave(tenant)`); False when none came in time."""
        if tenant not in self._queues and self._may_take(tenant, joining=tenant not in self._held):
            self._take(tenant)
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(tenant, deque()).append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=self.max_wait_s)
        except asyncio.CancelledError:  # the client went away while waiting
            self._abandon(tenant, waiter)
            raise
        if waiter.done():
            return True  # a place was handed to it
        self._abandon(tenant, waiter)
        return False

    def leave(self, tenant: Hashable = None) -> None:
        self.running -= 1
        held = self._held[tenant] - 1
        if held:
            self._held[tenant] = held
        else:
            del self._held[tenant]
        self._dispatch()

    # -- internals

    def _active(self, joining: bool) -> int:
        tenants = self._held.keys() | self._queues.keys()
        return len(tenants) + (1 if joining else 0)

    def _may_take(self, tenant: Hashable, *, joining: bool = False) -> bool:
        free = self.limit - self.running
        if free <= 0:
            return False
        # The places outside the reserve, split between the tenants at work or waiting.
        fair_share = max(1, (self.limit - self.reserve) // max(1, self._active(joining)))
        return self.held(tenant) < fair_share or free > self.reserve

    def _take(self, tenant: Hashable) -> None:
        self.running += 1
        self._held[tenant] = self._held.get(tenant, 0) + 1

    def _dispatch(self) -> None:
        """Hand free places to waiting tenants, round-robin, while any may take one."""
        while self.running < self.limit and self._queues:
            for tenant in list(self._queues):
                if self._may_take(tenant):
                    queue = self._queues.pop(tenant)
                    waiter = queue.popleft()
                    if queue:
                        self._queues[tenant] = queue  # to the back of the round
                    self._take(tenant)
                    waiter.set_result(None)
                    break
            else:
                return  # every waiting tenant holds its share and only the reserve is free

    def _abandon(self, tenant: Hashable, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            self.leave(tenant)  # handed a place it will not use: pass it on
            return
        waiter.cancel()
        queue = self._queues.get(tenant)
        if queue is not None:
            queue.remove(waiter)
            if not queue:
                del self._queues[tenant]
        self._dispatch()  # one tenant fewer: the others' fair shares grew


def tenant_of(scope: Scope) -> Hashable:
    principal = scope["state"].get("principal")
    if principal is not None:
        return principal.account_id
    return "stripe" if scope["path"] == _WEBHOOK else None


class AdmissionMiddleware:
    """Pure ASGI, inside the edge (request id, body guard) and authentication, and outside
    the Idempotency-Key claim, so a refused request has done nothing at all."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admission: Admission | None = getattr(scope["app"].state, "admission", None)
        if scope["type"] != "http" or admission is None or scope["path"] in NEVER_HELD:
            await self.app(scope, receive, send)
            return
        tenant = tenant_of(scope)
        if not await admission.enter(tenant):
            metrics.shed()
            error = TemporarilyUnavailable("paymentd is at capacity; retry shortly with the same request.",
                                           code="overloaded", retry_after=1)
            await send_error(send, error, scope["state"]["request_id"])
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave(tenant)
